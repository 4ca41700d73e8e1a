"""Training checkpoints: everything needed to continue a run exactly where it stopped."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from upbench.files import write_atomic

LAST = "last.pt"


def rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's, torch's CPU and CUDA generators."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def save_atomic(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file, flushed to disk, then renamed: ``path`` is never half
    written, and a failed write (a full disk) leaves no temporary file and raises an ``OSError``
    naming ``path`` (:func:`upbench.files.write_atomic`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda fh: torch.save(obj, fh))


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/last.pt`` atomically (a crash never leaves half a file)."""
    return save_atomic(state, Path(directory) / LAST)


def save_rank_rng(directory: Path, rank: int) -> None:
    """Write the RNG states of process ``rank`` (> 0) beside the checkpoint of rank 0."""
    save_atomic(rng_states(), Path(directory) / f"rng_rank{rank}.pt")


def load_rank_rng(directory: Path, rank: int) -> dict[str, Any] | None:
    """The RNG states saved by :func:`save_rank_rng` for ``rank``, or ``None``."""
    path = directory / f"rng_rank{rank}.pt"
    return torch.load(path, weights_only=False) if path.is_file() else None


def load_checkpoint(directory: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The last checkpoint in ``directory``, or ``None`` if there is none."""
    path = directory / LAST
    if not path.is_file():
        return None
    return torch.load(path, map_location=map_location, weights_only=False)
