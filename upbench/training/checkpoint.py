"""Training checkpoints: everything needed to continue a run exactly where it stopped.

Nothing a run folder holds may run code when it is read: a checkpoint is a pickle, and
``torch.load(..., weights_only=False)`` of a file someone placed in ``checkpoints/`` would execute
whatever it names. So checkpoints and RNG-state files are loaded with ``weights_only=True``
(tensors and plain data only), and they are written in that form: the RNG states of Python and
NumPy (tuples holding a NumPy array) are stored as tensors, ints and floats (:func:`rng_states`).
A file that cannot be loaded that way raises :class:`CheckpointError`, one line naming it.
"""

from __future__ import annotations

import pickle
import random
import re
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from upbench.errors import UpbenchError
from upbench.files import write_atomic

LAST = "last.pt"


class CheckpointError(UpbenchError):
    """A checkpoint or RNG-state file that cannot be loaded safely (objects other than tensors and
    plain data, or a damaged file)."""


def rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's, torch's CPU and CUDA generators, as tensors and plain
    numbers (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": str(name),
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_states` (also the tuples older checkpoints hold)."""
    py = states["python"]
    if isinstance(py, dict):
        py = (py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"])
    random.setstate(py)
    npy = states["numpy"]
    if isinstance(npy, dict):
        key = npy["key"].cpu().numpy().astype(np.uint32)
        npy = (npy["name"], key, npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    np.random.set_state(npy)
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


def _legacy_numpy_arrays() -> AbstractContextManager[Any]:
    """Allow what the NumPy RNG state of checkpoints written before :func:`rng_states` stored
    tensors needs (a ``uint32`` array): ``ndarray``, ``dtype`` (and ``uint32``'s) and their
    rebuilder. Rebuilding an array calls no code the file names: its items, if any, go through the
    same restricted unpickler. Without ``torch.serialization.safe_globals`` (torch < 2.5), or for
    a file written with NumPy 1 (other module names), such a checkpoint is refused."""
    allow = getattr(torch.serialization, "safe_globals", None)
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        return nullcontext()
    if allow is None:
        return nullcontext()
    return allow([_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))])


def safe_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data, never code; a file holding
    anything else, or a damaged one, raises :class:`CheckpointError` (an ``OSError`` stays one)."""
    try:
        with _legacy_numpy_arrays():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load ({_refusal(err)}): a checkpoint holds tensors and plain data only; "
            "this one is damaged or holds objects that could run code"
        ) from None
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - torch reports a damaged file with several types
        text = " ".join(str(err).split())[:200] or type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({text})") from None


def _refusal(err: pickle.UnpicklingError) -> str:
    """The reason in torch's many-line weights-only message (e.g. ``GLOBAL os.system ...``)."""
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it names {found.group(1)}, which loading would call"
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    return " ".join(found.group(1).split())[:120] if found else "not a weights-only file"


def load_rank_rng(directory: Path, rank: int) -> dict[str, Any] | None:
    """The RNG states saved by :func:`save_rank_rng` for ``rank``, or ``None``."""
    path = Path(directory) / f"rng_rank{rank}.pt"
    return _as_dict(safe_load(path), path) if path.is_file() else None


def load_checkpoint(directory: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The last checkpoint in ``directory``, or ``None`` if there is none; raises
    :class:`CheckpointError` for a file that cannot be loaded safely (see :func:`safe_load`)."""
    path = Path(directory) / LAST
    if not path.is_file():
        return None
    return _as_dict(safe_load(path, map_location), path)


def _as_dict(state: Any, path: Path) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (it holds a {type(state).__name__}, not a dict)")
    return state
