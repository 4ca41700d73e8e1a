"""Peak memory of one call: the increase over what was in use just before it.

* CUDA (``method="cuda_max_allocated"``): synchronise, free cached blocks, reset the peak
  statistics, read ``memory_allocated`` as the baseline, run ``fn`` once, synchronise and report
  ``max_memory_allocated - baseline``. Caching-allocator numbers: the CUDA context and memory
  that PyTorch does not allocate are not included.
* CPU on Linux (``method="linux_vmhwm"``): release freed heap memory to the OS
  (``malloc_trim``), reset the process high-water mark by writing ``5`` to
  ``/proc/self/clear_refs``, read ``VmRSS`` as the baseline, run ``fn`` and report
  ``VmHWM - baseline``. This is the whole process (other threads count too) and the page
  granularity of the kernel; memory the C allocator reuses without returning it to the OS first
  is not seen, so small temporaries can be under-counted.
* Anywhere else (no ``/proc``, ``clear_refs`` not writable, other accelerators): ``fn`` is not
  run and the result is ``bytes=None`` with the reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class PeakMemory:
    """Result of :func:`peak_memory`.

    Attributes:
        bytes: peak increase over the baseline in bytes, or ``None`` when not measurable here.
        baseline_bytes: memory in use before the call (allocated on CUDA, RSS on CPU).
        method: ``"cuda_max_allocated"``, ``"linux_vmhwm"`` or ``"none"``.
        reason: why ``bytes`` is ``None`` (empty otherwise).
    """

    bytes: int | None
    baseline_bytes: int | None
    method: str
    reason: str = ""


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])  # "VmHWM:   1234 kB"
    raise OSError(f"{field} not found in {_STATUS}")


def _malloc_trim() -> None:
    """Return freed glibc heap memory to the OS so a later peak is not hidden by reuse."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass


def cpu_peak_unavailable_reason() -> str:
    """Empty if the Linux ``VmHWM`` method works in this process, else the reason it does not."""
    if not _STATUS.exists():
        return "no /proc/self/status (CPU peak memory needs Linux)"
    try:
        _status_kib("VmHWM")
        _CLEAR_REFS.write_text("5")
    except OSError as exc:
        return f"cannot reset the peak RSS through {_CLEAR_REFS}: {exc}"
    return ""


def _cuda_peak(fn: Callable[[], Any], dev: torch.device) -> PeakMemory:
    torch.cuda.synchronize(dev)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    fn()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev)
    return PeakMemory(bytes=max(0, peak - base), baseline_bytes=base, method="cuda_max_allocated")


def _cpu_peak(fn: Callable[[], Any]) -> PeakMemory:
    reason = cpu_peak_unavailable_reason()
    if reason:
        return PeakMemory(bytes=None, baseline_bytes=None, method="none", reason=reason)
    gc.collect()
    _malloc_trim()
    _CLEAR_REFS.write_text("5")  # VmHWM := current RSS
    base = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    return PeakMemory(bytes=max(0, peak - base) * 1024, baseline_bytes=base * 1024, method="linux_vmhwm")


def peak_memory(fn: Callable[[], Any], *, device: torch.device | str) -> PeakMemory:
    """Run ``fn()`` once on ``device`` and return its peak memory with the method used.

    Exceptions from ``fn`` (``torch.OutOfMemoryError`` included) propagate; on CUDA the cache is
    emptied first so that a caller can go on.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return _cuda_peak(fn, dev)
        except BaseException:
            gc.collect()
            torch.cuda.empty_cache()
            raise
    if dev.type == "cpu":
        return _cpu_peak(fn)
    return PeakMemory(
        bytes=None,
        baseline_bytes=None,
        method="none",
        reason=f"no peak-memory method for device type '{dev.type}'",
    )


def measure_peak_memory(fn: Callable[[], Any], *, device: torch.device | str) -> int | None:
    """Peak memory of one call of ``fn()`` over the memory in use before it, in bytes.

    ``None`` where this device/platform has no method (see :func:`peak_memory` for the reason).
    """
    return peak_memory(fn, device=device).bytes
