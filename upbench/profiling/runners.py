"""Callables to time and measure: a module's forward or forward+backward on fixed inputs.

:func:`prepare` applies an :class:`ExecutionMode` (``channels_last``, ``torch.compile``, CUDA
graphs); a mode that cannot run here raises :class:`ModeUnavailable` with the reason, which the
caller records as a ``skipped`` row. Eager mode with contiguous tensors is the default and the
number to compare; the other modes are separate measurements, never mixed with it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

#: A no-argument callable: the unit of work that is timed or measured.
Work = Callable[[], Any]


class ModeUnavailable(RuntimeError):
    """An execution mode that this device or installation does not support (the reason is the message)."""


@dataclass(frozen=True)
class ExecutionMode:
    """How the timed calls run.

    Attributes:
        channels_last: convert 4-D inputs and the module to ``torch.channels_last``.
        compile: ``None`` (eager) or a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"``,
            ``"max-autotune"``).
        cuda_graph: capture the call in a CUDA graph and replay it (CUDA only).
    """

    channels_last: bool = False
    compile: str | None = None
    cuda_graph: bool = False

    @property
    def label(self) -> str:
        """``"eager"`` or the non-default settings joined by ``+``, e.g. ``"channels_last+compile"``."""
        parts = []
        if self.channels_last:
            parts.append("channels_last")
        if self.compile is not None:
            parts.append("compile" if self.compile == "default" else f"compile-{self.compile}")
        if self.cuda_graph:
            parts.append("cuda_graph")
        return "+".join(parts) or "eager"


def unavailable_reason(mode: ExecutionMode, device: torch.device | str) -> str:
    """Empty if ``mode`` can be tried on ``device``, else why not."""
    dev = torch.device(device)
    if mode.cuda_graph and dev.type != "cuda":
        return f"CUDA graphs need a CUDA device, not {dev.type}"
    if mode.cuda_graph and mode.compile is not None:
        return "choose either torch.compile or cuda_graph (compile mode 'reduce-overhead' uses CUDA graphs)"
    if mode.compile is not None:
        if not hasattr(torch, "compile"):
            return "torch.compile is not available in this torch build"
        if dev.type == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
            return "torch.compile on CPU needs a C++ compiler (none found on PATH)"
    return ""


def _to_format(t: Any, channels_last: bool) -> Any:
    """A channels-last copy of a 4-D tensor, made a leaf again (with ``requires_grad`` kept), so
    that its gradient lands on the tensor that is timed rather than accumulating on the original."""
    if channels_last and isinstance(t, Tensor) and t.dim() == 4:
        return t.detach().contiguous(memory_format=torch.channels_last).requires_grad_(t.requires_grad)
    return t


def prepare(
    module: nn.Module, inputs: Sequence[Any], mode: ExecutionMode, device: torch.device | str
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The callable and inputs for ``mode``; raises :class:`ModeUnavailable` if it cannot run.

    CUDA graphs are applied by :func:`forward_fn` / :func:`forward_backward_fn` (they need the
    final inputs), so here the module is only converted/compiled.
    """
    reason = unavailable_reason(mode, device)
    if reason:
        raise ModeUnavailable(reason)
    inputs = tuple(_to_format(t, mode.channels_last) for t in inputs)
    if mode.channels_last:
        module = module.to(memory_format=torch.channels_last)
    fn: Callable[..., Any] = module
    if mode.compile is not None:
        fn = torch.compile(module, mode=None if mode.compile == "default" else mode.compile)
    return fn, inputs


def _first_tensor(out: Any) -> Tensor:
    """The tensor to backpropagate from: the output, or the first tensor in a tuple/list/dict."""
    if isinstance(out, Tensor):
        return out
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    for v in values:
        if isinstance(v, Tensor):
            return v
    raise TypeError(f"cannot find a tensor output to backpropagate from in {type(out).__name__}")


def forward_fn(fn: Callable[..., Any], inputs: Sequence[Any], *, cuda_graph: bool = False) -> Work:
    """A no-argument callable running ``fn(*inputs)`` without autograd (``torch.no_grad``)."""
    args = tuple(inputs)

    def run() -> Any:
        with torch.no_grad():
            return fn(*args)

    if not cuda_graph:
        return run
    return _graphed(run)


def forward_backward_fn(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    module: nn.Module | None = None,
    cuda_graph: bool = False,
) -> Work:
    """A no-argument callable running ``fn(*inputs)`` then backward with a fixed random gradient.

    Floating-point ``inputs`` should require grad (as the features inside a network do); the
    parameter gradients of ``module`` are dropped (set to ``None``) before each call, as a
    training step's ``zero_grad`` does.
    """
    args = tuple(inputs)
    state: dict[str, Tensor] = {}

    def run() -> Any:
        if module is not None:
            module.zero_grad(set_to_none=True)
        for a in args:
            if isinstance(a, Tensor) and a.requires_grad:
                a.grad = None
        out = _first_tensor(fn(*args))
        if "grad" not in state:  # one fixed upstream gradient, made once outside the timed steady state
            state["grad"] = torch.randn_like(out)
        out.backward(state["grad"])
        return out

    if not cuda_graph:
        return run
    return _graphed(run)


def _graphed(run: Work) -> Work:
    """Capture ``run`` in a CUDA graph (after warm-up on a side stream); return its replay."""
    if not torch.cuda.is_available():
        raise ModeUnavailable("CUDA graphs need a CUDA device")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    return graph.replay
