"""Run a measurement and turn its failure into a status (``ok``, ``oom``, ``failed``) instead of a crash."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a guarded call returned: ``value`` if ``status == "ok"``, else ``error`` text."""

    value: T | None
    status: str
    error: str | None = None


def is_oom(exc: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError`` and for errors whose message says 'out of memory'."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
    )


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def run_guarded(fn: Callable[[], T]) -> Outcome[T]:
    """Call ``fn()``; an exception becomes ``status="oom"`` or ``"failed"`` with its text.

    ``KeyboardInterrupt`` and ``SystemExit`` propagate. After an error the CUDA cache is emptied so
    the next measurement starts clean.
    """
    try:
        return Outcome(value=fn(), status="ok")
    except Exception as exc:
        status = "oom" if is_oom(exc) else "failed"
        error = f"{type(exc).__name__}: {exc}".strip()
        del exc
        _release_memory()
        return Outcome(value=None, status=status, error=error)
