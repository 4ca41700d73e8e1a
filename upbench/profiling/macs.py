"""Multiply-add counts with fvcore's ``FlopCountAnalysis`` plus upbench's op handles.

fvcore counts one fused multiply-add as one "flop", so its totals are MACs: report them as GMACs.
:mod:`upbench.profiling.handles` adds handles for every op the built-in operators and models use
(conventions in its docstring and :data:`MAC_CONVENTIONS`); ops still without a handle are
returned in ``MacCount.unsupported`` so a caller can see what was counted as 0. fvcore is
imported lazily here, with its import-time ``DeprecationWarning`` s silenced.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from upbench.profiling.handles import HANDLES, MAC_CONVENTIONS, Handle

__all__ = ["MAC_CONVENTIONS", "MacCount", "count_macs", "op_handles"]


@dataclass(frozen=True)
class MacCount:
    """Result of :func:`count_macs`.

    Attributes:
        total: multiply-adds of one forward call.
        by_operator: MACs per op name (``conv``, ``mul``, ``softmax``, ...); zero entries omitted.
        unsupported: ops that had no handle and were counted as 0 (``aten::name`` -> calls).
    """

    total: int
    by_operator: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        """``total / 1e9``."""
        return self.total / 1e9


def op_handles() -> dict[str, Handle | None]:
    """upbench's handle table (``aten::op`` -> handle; ``None`` marks ops counted as 0)."""
    return dict(HANDLES)


def _tensors(out: Any) -> tuple[Tensor, ...]:
    """All tensors in a (nested) output, in order, so fvcore can trace any return type."""
    if isinstance(out, Tensor):
        return (out,)
    if isinstance(out, Mapping):
        return tuple(t for k in sorted(out, key=str) for t in _tensors(out[k]))
    if isinstance(out, (tuple, list)):
        return tuple(t for v in out for t in _tensors(v))
    if hasattr(out, "__dataclass_fields__"):
        return tuple(t for name in out.__dataclass_fields__ for t in _tensors(getattr(out, name)))
    return ()


class _Traceable(nn.Module):
    """Calls ``module(*args, **kwargs)`` and returns its tensors as a flat tuple."""

    def __init__(self, module: nn.Module, kwargs: Mapping[str, Any]) -> None:
        super().__init__()
        self.module = module
        self.kwargs = dict(kwargs)

    def forward(self, *args: Any) -> tuple[Tensor, ...]:
        out = _tensors(self.module(*args, **self.kwargs))
        if not out:
            raise TypeError(f"count_macs: {type(self.module).__name__} returned no tensors to trace")
        return out


def _flop_count_analysis() -> type:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fvcore.nn imports torch.jit.script code
        from fvcore.nn import FlopCountAnalysis
    return FlopCountAnalysis


def count_macs(
    module: nn.Module,
    inputs: tuple[Any, ...],
    kwargs: Mapping[str, Any] | None = None,
    *,
    extra_handles: Mapping[str, Handle | None] | None = None,
) -> MacCount:
    """Multiply-adds of ``module(*inputs, **kwargs)`` (one forward pass, traced by fvcore).

    Args:
        module: any ``nn.Module``; its train/eval mode is used as is (call ``.eval()`` first for
            inference costs: dropout and batch-norm count differently).
        inputs: positional inputs (tensors).
        kwargs: keyword arguments, passed unchanged (not traced).
        extra_handles: more fvcore handles (``"aten::op"`` or ``"prim::PythonOp.Name"``), e.g.
            for a plugin's custom autograd ``Function``; they override upbench's.

    Returns:
        :class:`MacCount`; ``unsupported`` lists ops counted as 0 for lack of a handle.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"count_macs needs a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    analysis_cls = _flop_count_analysis()
    wrapped = _Traceable(module, kwargs or {})
    analysis = analysis_cls(wrapped, inputs)
    analysis.set_op_handle(**{**HANDLES, **(extra_handles or {})})
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        total = analysis.total()
        by_operator = {k: int(round(v)) for k, v in analysis.by_operator().items() if v}
        unsupported = dict(analysis.unsupported_ops())
    return MacCount(total=int(round(total)), by_operator=by_operator, unsupported=unsupported)
