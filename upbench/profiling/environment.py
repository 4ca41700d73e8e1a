"""The environment a measurement was taken in: device, versions, threads, flags, git commit."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    """Output of a read-only git command in the upbench checkout, or ``None`` outside one."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never write the index (read-only queries)
    try:
        out = subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10, check=True, env=env
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the upbench source checkout; ``(None, None)`` when not in git."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _cuda_fields(dev: torch.device) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(dev)
    return {
        "device_name": props.name,
        "device_memory_bytes": int(props.total_memory),
        "device_capability": f"{props.major}.{props.minor}",
        "device_count": torch.cuda.device_count(),
        "cudnn_version": torch.backends.cudnn.version(),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }


def _versions() -> dict[str, Any]:
    from importlib import metadata

    out: dict[str, Any] = {}
    for dist in ("upbench", "numpy", "fvcore"):
        try:
            out[f"{dist}_version"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[f"{dist}_version"] = None
    return out


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """A flat, JSON-serialisable description of where measurements on ``device`` are taken.

    Keys include ``device``, ``device_name``, ``torch_version``, ``cuda_version`` (``None`` on a
    CPU build), ``threads`` (``torch.get_num_threads()``), ``interop_threads``, ``cpu_count``,
    ``python``, ``platform``, ``hostname``, ``git_commit``, ``git_dirty`` and the package versions;
    on CUDA also the device memory, capability, cuDNN version and TF32 / cudnn.benchmark flags.
    """
    dev = torch.device(device)
    commit, dirty = git_state()
    env: dict[str, Any] = {
        "device": str(dev),
        "device_type": dev.type,
        "device_name": cpu_name(),
        "cpu_name": cpu_name(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "git_commit": commit,
        "git_dirty": dirty,
        "default_dtype": str(torch.get_default_dtype()).replace("torch.", ""),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        **_versions(),
    }
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"environment({str(dev)!r}): CUDA is not available on this machine")
        env.update(_cuda_fields(dev))
    return env
