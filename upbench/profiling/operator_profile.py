"""Profile one registered operator at one size: the measurement rows of an ``ops`` cell.

Rows follow the results schema of docs/architecture.md (``metric``, ``value``, ``unit``,
``statistic``, ``status``, ``error``); whoever records the cell adds the identity and provenance columns.

===============================  =======  ===========================================  =====
metric                           unit     statistic                                    mode
===============================  =======  ===========================================  =====
``params``, ``params_trainable``  count   value
``gmacs``                        GMAC     value (fvcore + upbench handles, one forward)
``latency_forward``              ms       median, iqr, q1, q3 (+ ``n`` in count)       eval, no_grad
``latency_forward_backward``     ms       median, iqr, q1, q3 (+ ``n`` in count)       train
``peak_memory``                  MiB      value (one forward, no_grad)
``peak_memory_forward_backward`` MiB      value (one forward+backward)
===============================  =======  ===========================================  =====

Inputs are ``randn`` (seed 0): ``x`` ``(batch, in_channels, h, w)`` and, for guided operators,
``guide`` ``(batch, guide_channels, s*h, s*w)``; for forward+backward both require grad, as inside
a network. A scale the operator does not support gives ``skipped`` rows, an operator (or input)
that cannot be built gives ``failed``/``oom`` rows for every metric; an error during one
measurement gives a row with ``status`` ``oom`` or ``failed`` (value ``None``, statistic
``median`` for latencies) and the other measurements still run. A non-eager
:class:`~upbench.profiling.runners.ExecutionMode` suffixes the latency metrics with its label
(``latency_forward_channels_last``); a mode unavailable here gives ``skipped`` rows with the reason.

Cost of a call: one fvcore trace plus ``warmup + iters`` calls and one peak-memory call per mode.
With the defaults (``warmup=1``, ``iters=5``, ``min_time_s=0``) a cell at 64 channels and an 8x8 LR
map takes well under a second on one CPU core; the time grows with ``s**2`` times the channels
(one thread, shared machine: the whole ``ops`` grid of 13 operators x scales {2, 4, 8, 16} x sizes
``[1, 64, 8, 8]`` and ``[1, 128, 16, 16]``, ``iters=3``, took 267 s, over half of it in the x16
cells at 128 channels). Raise ``iters``/``min_time_s`` for publication numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from upbench.profiling.macs import count_macs
from upbench.profiling.memory import peak_memory
from upbench.profiling.outcome import Outcome, run_guarded
from upbench.profiling.params import count_params
from upbench.profiling.runners import ExecutionMode, ModeUnavailable, forward_backward_fn, forward_fn, prepare
from upbench.profiling.timing import measure_latency
from upbench.results import row

DEFAULT_OPS_WARMUP = 1
DEFAULT_OPS_ITERS = 5
MODES = ("forward", "forward_backward")
MiB = float(1 << 20)

Row = dict[str, Any]


def _latency_rows(metric: str, outcome: Outcome[Any]) -> list[Row]:
    if outcome.status != "ok":
        return [row(metric, None, "ms", "median", outcome.status, outcome.error)]
    s = outcome.value
    rows = [row(metric, getattr(s, f"{stat}_ms"), "ms", stat) for stat in ("median", "iqr", "q1", "q3")]
    return [*rows, row(metric, s.n, "count", "n")]


def _memory_row(metric: str, outcome: Outcome[Any]) -> Row:
    if outcome.status != "ok":
        return row(metric, None, "MiB", status=outcome.status, error=outcome.error)
    peak = outcome.value
    if peak.bytes is None:
        return row(metric, None, "MiB", status="skipped", error=peak.reason)
    return row(metric, peak.bytes / MiB, "MiB")


def _all_rows(modes: Sequence[str], status: str, reason: str, label: str) -> list[Row]:
    """One valueless row per metric, all with ``status`` and ``reason`` (nothing could be measured)."""
    rows = [
        row(m, None, u, status=status, error=reason)
        for m, u in (("params", "count"), ("params_trainable", "count"), ("gmacs", "GMAC"))
    ]
    for mode in modes:
        rows.append(row(_latency_metric(mode, label), None, "ms", "median", status, reason))
        rows.append(row(_memory_metric(mode), None, "MiB", status=status, error=reason))
    return rows


def _latency_metric(mode: str, label: str) -> str:
    return f"latency_{mode}" + ("" if label == "eager" else f"_{label.replace('+', '_').replace('-', '_')}")


def _memory_metric(mode: str) -> str:
    return "peak_memory" if mode == "forward" else f"peak_memory_{mode}"


def _inputs(
    batch: int,
    channels: int,
    lr_size: tuple[int, int],
    scale: int,
    guide_channels: int | None,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor | None]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    h, w = lr_size
    x = torch.randn(batch, channels, h, w, generator=gen).to(device=device, dtype=dtype)
    guide = None
    if guide_channels is not None:
        guide = torch.randn(batch, guide_channels, scale * h, scale * w, generator=gen)
        guide = guide.to(device=device, dtype=dtype)
    return x, guide


def _check_modes(modes: Sequence[str]) -> None:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"profile_operator: unknown modes {unknown}; choose from {list(MODES)}")


def profile_operator(
    name: str,
    *,
    scale: int,
    in_channels: int,
    lr_size: tuple[int, int],
    guide_channels: int | None = None,
    batch: int = 1,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    options: Mapping[str, Any] | None = None,
    warmup: int = DEFAULT_OPS_WARMUP,
    iters: int = DEFAULT_OPS_ITERS,
    min_time_s: float = 0.0,
    modes: Sequence[str] = MODES,
    execution: ExecutionMode | None = None,
    memory: bool = True,
) -> list[Row]:
    """Params, GMACs, latency and peak memory of operator ``name`` on one input size.

    Args:
        name: registered operator name (or alias).
        scale: integer upsampling ratio.
        in_channels: channels of the LR feature.
        lr_size: ``(h, w)`` of the LR feature.
        guide_channels: channels of the HR guide (guided operators; ``None``: the operator default).
        batch: batch size.
        device, dtype: where and in which precision the operator runs.
        options: operator options (see ``upbench info <name>``).
        warmup, iters, min_time_s: latency protocol (:func:`~upbench.profiling.measure_latency`).
        modes: any of ``"forward"``, ``"forward_backward"``.
        execution: optional ``channels_last`` / ``torch.compile`` / CUDA-graph mode for latencies.
        memory: also measure peak memory (one extra call per mode).

    Returns:
        the rows described in the module docstring.
    """
    from upbench.registry import create_operator, operator_info

    _check_modes(modes)
    mode = execution or ExecutionMode()
    info = operator_info(name)
    if not info.supports_scale(scale):
        reason = f"operator '{info.name}' does not support scale {scale} (supported: {info.scales_text()})"
        return _all_rows(modes, "skipped", reason, mode.label)
    dev = torch.device(device)
    opts = dict(options or {})

    def build() -> tuple[torch.nn.Module, Tensor, Tensor | None]:
        op = create_operator(name, in_channels, scale, guide_channels, **opts).to(device=dev, dtype=dtype)
        g_channels = op.guide_channels if info.guided else None
        return op, *_inputs(batch, in_channels, lr_size, scale, g_channels, dev, dtype)

    built = run_guarded(build)
    if built.status != "ok":  # the operator or its inputs could not be made (bad option, OOM, ...)
        return _all_rows(modes, built.status, built.error or "", mode.label)
    op, x, guide = built.value

    p = count_params(op)
    rows = [row("params", p["total"], "count"), row("params_trainable", p["trainable"], "count")]
    rows.append(_gmacs_row(op, x, guide))
    for m in modes:
        rows += _measure_mode(op, x, guide, m, dev, mode, warmup, iters, min_time_s, memory)
    return rows


def _gmacs_row(op: torch.nn.Module, x: Tensor, guide: Tensor | None) -> Row:
    op.eval()
    counted = run_guarded(lambda: count_macs(op, (x, guide)))
    if counted.status != "ok":
        return row("gmacs", None, "GMAC", status=counted.status, error=counted.error)
    macs = counted.value
    skipped = ", ".join(sorted(macs.unsupported))
    error = f"fvcore counted as 0 (no handle): {skipped}" if skipped else None
    return row("gmacs", macs.total / 1e9, "GMAC", error=error)


def _measure_mode(
    op: torch.nn.Module,
    x: Tensor,
    guide: Tensor | None,
    m: str,
    dev: torch.device,
    mode: ExecutionMode,
    warmup: int,
    iters: int,
    min_time_s: float,
    memory: bool,
) -> list[Row]:
    metric = _latency_metric(m, mode.label)
    backward = m == "forward_backward"
    op.train(backward)
    args: list[Tensor | None] = [x, guide]
    if backward:
        args = [a.detach().clone().requires_grad_(True) if a is not None else None for a in args]
    try:
        fn, prepared = prepare(op, args, mode, dev)
    except ModeUnavailable as exc:
        return [row(metric, None, "ms", "median", "skipped", str(exc))]
    make: Callable[[], Callable[[], Any]]
    if backward:
        make = lambda: forward_backward_fn(fn, prepared, module=op, cuda_graph=mode.cuda_graph)  # noqa: E731
    else:
        make = lambda: forward_fn(fn, prepared, cuda_graph=mode.cuda_graph)  # noqa: E731
    runner = run_guarded(make)
    if runner.status != "ok":
        return [row(metric, None, "ms", "median", runner.status, runner.error)]
    call = runner.value

    def timed() -> Any:
        return measure_latency(call, device=dev, warmup=warmup, iters=iters, min_time_s=min_time_s)

    memory_row = None
    if memory and mode.label == "eager":  # first, from a state with no gradients allocated
        memory_row = _memory_row(
            _memory_metric(m), run_guarded(lambda: _peak_without_gradients(call, op, prepared, dev))
        )
    rows = _latency_rows(metric, run_guarded(timed))
    if memory_row is not None:
        rows.append(memory_row)
    op.zero_grad(set_to_none=True)
    return rows


def _peak_without_gradients(
    call: Callable[[], Any], op: torch.nn.Module, inputs: Sequence[Any], dev: torch.device
) -> Any:
    """Peak memory of one call measured after dropping every gradient, so that the gradients the
    call allocates (parameters and inputs) count in its peak instead of sitting in the baseline."""
    op.zero_grad(set_to_none=True)
    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    return peak_memory(call, device=dev)
