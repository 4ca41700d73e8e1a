"""Cost profiling: parameters, GMACs (fvcore + upbench's op handles), latency, peak memory, environment.

Public API (docs/architecture.md):

* :func:`count_params` -> ``{"total": int, "trainable": int}``;
* :func:`count_macs` -> :class:`MacCount` (fvcore multiply-adds, reported as GMACs);
* :func:`measure_latency` -> :class:`TimingStats` (median, quartiles, IQR, n, threads);
* :func:`measure_peak_memory` -> bytes (or ``None`` where no method exists), :func:`peak_memory`
  with the method and reason;
* :func:`environment` -> dict of device, versions, threads, git commit, ...;
* :func:`profile_operator` -> the result rows of one ``ops`` cell.

fvcore is imported lazily (only by :func:`count_macs`), so ``import upbench.profiling`` is cheap.
"""

from __future__ import annotations

from upbench.profiling.environment import environment
from upbench.profiling.macs import MAC_CONVENTIONS, MacCount, count_macs, op_handles
from upbench.profiling.memory import PeakMemory, measure_peak_memory, peak_memory
from upbench.profiling.operator_profile import DEFAULT_OPS_ITERS, DEFAULT_OPS_WARMUP, profile_operator
from upbench.profiling.outcome import Outcome, is_oom, run_guarded
from upbench.profiling.params import count_params
from upbench.profiling.runners import ExecutionMode, forward_backward_fn, forward_fn, prepare
from upbench.profiling.timing import TimingStats, measure_latency, synchronize

__all__ = [
    "DEFAULT_OPS_ITERS",
    "DEFAULT_OPS_WARMUP",
    "MAC_CONVENTIONS",
    "ExecutionMode",
    "MacCount",
    "Outcome",
    "PeakMemory",
    "TimingStats",
    "count_macs",
    "count_params",
    "environment",
    "forward_backward_fn",
    "forward_fn",
    "is_oom",
    "measure_latency",
    "measure_peak_memory",
    "op_handles",
    "peak_memory",
    "prepare",
    "profile_operator",
    "run_guarded",
    "synchronize",
]
