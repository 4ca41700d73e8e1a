"""Nothing a run folder holds runs code when loaded: checkpoints and RNG states load with
``weights_only=True``, and the RNG states survive that exactly. (A resumed run equals an
uninterrupted one: tests/test_training.py::test_resume_equals_uninterrupted_run.)"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from upbench.errors import UpbenchError
from upbench.training import checkpoint
from upbench.training.checkpoint import CheckpointError

MARKER = "ran.marker"


def _leave_marker(path: str) -> None:
    Path(path).write_text("code in the checkpoint ran\n")


class _RunsCodeWhenLoaded:
    """A pickle that calls ``_leave_marker`` when unpickled (as a planted ``last.pt`` could)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (_leave_marker, (self.marker,))


@pytest.mark.parametrize("name", ["last.pt", "rng_rank1.pt"])
def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(name, tmp_path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"model": {}, "rng": _RunsCodeWhenLoaded(tmp_path / MARKER)}, folder / name)
    with pytest.raises(CheckpointError) as refused:
        if name == "last.pt":
            checkpoint.load_checkpoint(folder)
        else:
            checkpoint.load_rank_rng(folder, 1)
    message = str(refused.value)
    assert isinstance(refused.value, UpbenchError) and "\n" not in message
    assert message.startswith(f"{folder / name}: refused to load") and "_leave_marker" in message
    assert not (tmp_path / MARKER).exists()


def test_a_damaged_checkpoint_is_a_checkpoint_error(tmp_path) -> None:
    (tmp_path / checkpoint.LAST).write_bytes(b"")
    with pytest.raises(CheckpointError, match="last.pt: not a readable checkpoint"):
        checkpoint.load_checkpoint(tmp_path)
    torch.save([1, 2], tmp_path / checkpoint.LAST)
    with pytest.raises(CheckpointError, match="not a checkpoint \\(it holds a list"):
        checkpoint.load_checkpoint(tmp_path)


def _draws() -> tuple:
    return (random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(3).tolist())


def test_rng_states_load_weights_only_and_restore_exactly(tmp_path) -> None:
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    random.gauss(0, 1)  # both generators now hold a cached second Gaussian: part of the state
    np.random.randn()
    checkpoint.save_checkpoint(tmp_path, {"rng": checkpoint.rng_states()})
    expected = _draws()

    saved = torch.load(tmp_path / checkpoint.LAST, weights_only=True)  # plain torch.load: no allowlist
    checkpoint.set_rng_states(saved["rng"])
    assert _draws() == expected

    # a checkpoint of an earlier version (tuples holding a NumPy array) still resumes, safely
    random.seed(4)
    np.random.seed(4)
    np.random.randn()
    legacy = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"rng": legacy}, tmp_path / checkpoint.LAST)
    expected = _draws()
    checkpoint.set_rng_states(checkpoint.load_checkpoint(tmp_path)["rng"])
    assert _draws() == expected
