"""Latency: warm-up, then individually timed calls; median, quartiles and IQR.

Protocol (anchors.md section 4.3): ``warmup`` untimed calls, then at least ``iters`` timed calls,
continuing until ``min_time_s`` of timed calls have accumulated (capped at ``max_iters``). Each
call is timed on its own so the spread (IQR) is visible, not averaged away:

* CUDA: a pair of ``torch.cuda.Event(enable_timing=True)`` around each call on the current
  stream, read after one final synchronise (``method="cuda_event"``, GPU stream time);
* CPU (and any other device): ``time.perf_counter`` around each call, after synchronising the
  device if it has a ``synchronize`` (``method="perf_counter"``).

Quartiles use linear interpolation (numpy's default). The thread count in effect is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Defaults of :func:`measure_latency`, small enough for the ``ops`` suite on 2 CPU cores.
DEFAULT_WARMUP = 2
DEFAULT_ITERS = 5
DEFAULT_MIN_TIME_S = 0.0
DEFAULT_MAX_ITERS = 1000


@dataclass(frozen=True)
class TimingStats:
    """Summary of one latency measurement (milliseconds per call).

    Attributes:
        median_ms, q1_ms, q3_ms, iqr_ms: median, first and third quartile, ``q3 - q1``.
        n: number of timed calls.
        mean_ms, min_ms, max_ms: for reference; prefer the median.
        warmup: untimed calls made first.
        threads: ``torch.get_num_threads()`` during the measurement.
        device: the device string the calls ran on.
        method: ``"cuda_event"`` or ``"perf_counter"``.
        samples_ms: every timed call, in order.
    """

    median_ms: float
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    n: int
    mean_ms: float
    min_ms: float
    max_ms: float
    warmup: int
    threads: int
    device: str
    method: str
    samples_ms: tuple[float, ...] = field(repr=False, default=())

    @classmethod
    def from_samples(cls, samples_ms: list[float], *, warmup: int, device: str, method: str) -> TimingStats:
        """Summarise ``samples_ms`` (at least one sample)."""
        if not samples_ms:
            raise ValueError("TimingStats needs at least one timed sample")
        arr = np.asarray(samples_ms, dtype=np.float64)
        q1, med, q3 = (float(v) for v in np.percentile(arr, [25.0, 50.0, 75.0]))
        return cls(
            median_ms=med,
            q1_ms=q1,
            q3_ms=q3,
            iqr_ms=q3 - q1,
            n=len(samples_ms),
            mean_ms=float(arr.mean()),
            min_ms=float(arr.min()),
            max_ms=float(arr.max()),
            warmup=warmup,
            threads=torch.get_num_threads(),
            device=device,
            method=method,
            samples_ms=tuple(float(v) for v in arr),
        )


def synchronize(device: torch.device | str) -> None:
    """Wait for all work queued on ``device`` (no-op on CPU)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        return
    backend = getattr(torch, dev.type, None)
    sync = getattr(backend, "synchronize", None)
    if dev.type != "cpu" and callable(sync):
        sync()


def _check_counts(warmup: int, iters: int, min_time_s: float, max_iters: int) -> None:
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"measure_latency: iters must be an integer >= 1, got {iters!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"measure_latency: warmup must be an integer >= 0, got {warmup!r}")
    if min_time_s < 0:
        raise ValueError(f"measure_latency: min_time_s must be >= 0, got {min_time_s!r}")
    if max_iters < iters:
        raise ValueError(f"measure_latency: max_iters ({max_iters}) must be >= iters ({iters})")


Work = Callable[[], Any]


def _time_cuda(fn: Work, dev: torch.device, iters: int, min_time_s: float, max_iters: int) -> list[float]:
    pairs = []
    wall = 0.0
    with torch.cuda.device(dev):
        while len(pairs) < iters or (wall < min_time_s and len(pairs) < max_iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter()
            start.record()
            fn()
            end.record()
            end.synchronize()  # keeps the host from queueing far ahead; the events time the GPU
            wall += time.perf_counter() - t0
            pairs.append((start, end))
        torch.cuda.synchronize(dev)
    return [s.elapsed_time(e) for s, e in pairs]


def _time_host(fn: Work, dev: torch.device, iters: int, min_time_s: float, max_iters: int) -> list[float]:
    samples: list[float] = []
    wall = 0.0
    while len(samples) < iters or (wall < min_time_s and len(samples) < max_iters):
        t0 = time.perf_counter()
        fn()
        synchronize(dev)
        dt = time.perf_counter() - t0
        wall += dt
        samples.append(dt * 1e3)
    return samples


def measure_latency(
    fn: Callable[[], Any],
    *,
    device: torch.device | str,
    warmup: int = DEFAULT_WARMUP,
    iters: int = DEFAULT_ITERS,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    max_iters: int = DEFAULT_MAX_ITERS,
) -> TimingStats:
    """Time ``fn()`` (no arguments) on ``device``; see the module docstring for the protocol.

    Args:
        fn: the work to time; it must queue all its work on ``device`` (its result is dropped).
        device: where ``fn`` runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
        warmup: untimed calls first (lazy initialisation, allocator growth, autotuning).
        iters: minimum number of timed calls.
        min_time_s: keep timing until this much time was spent in timed calls.
        max_iters: upper bound on timed calls when ``min_time_s`` is not yet reached.

    Exceptions raised by ``fn`` (``torch.OutOfMemoryError`` included) propagate; use
    :func:`upbench.profiling.outcome.run_guarded` to turn them into a status.
    """
    _check_counts(warmup, iters, min_time_s, max_iters)
    dev = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(dev)
    if dev.type == "cuda":
        samples = _time_cuda(fn, dev, iters, min_time_s, max_iters)
        method = "cuda_event"
    else:
        samples = _time_host(fn, dev, iters, min_time_s, max_iters)
        method = "perf_counter"
    return TimingStats.from_samples(samples, warmup=warmup, device=str(dev), method=method)
