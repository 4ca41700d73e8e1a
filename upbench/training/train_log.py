"""The learning curve of a train cell: ``cells/<id>/train_log.csv``.

One line per logged iteration (every ``train.log_every``): ``iteration,loss,lr``, the loss of that
iteration's batch (mean over processes) and the learning rate of the first parameter group that
its step used. Written once, atomically, when the cell's training ends (a resumed cell writes the
whole curve, earlier sessions included, since the history travels in the training checkpoint); a
failed write leaves no temporary file (:func:`upbench.files.write_atomic`).

:class:`TensorBoardLog` also streams the same two scalars (``train/loss``, ``train/lr``) while the
cell trains, to ``cells/<id>/tensorboard/``, when the optional ``tensorboard`` package is installed
(``pip install -e ".[tensorboard]"``; ``tensorboard --logdir runs/quick/cells``). Without it, or
with ``UPBENCH_TENSORBOARD=0``, nothing is written and nothing is imported.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd

from upbench.files import write_text_atomic

FILE_NAME = "train_log.csv"
COLUMNS = ("iteration", "loss", "lr")


def write_train_log(
    path: str | Path, loss_history: list[tuple[int, float]], lr_history: list[tuple[int, float]]
) -> None:
    """Write the curve; ``lr`` is left empty at iterations with no recorded learning rate."""
    path = Path(path)
    lrs = dict(lr_history)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for iteration, loss in loss_history:
        lr = lrs.get(iteration)
        writer.writerow((int(iteration), repr(float(loss)), "" if lr is None else repr(float(lr))))
    write_text_atomic(path, buffer.getvalue())


def read_train_log(path: str | Path) -> pd.DataFrame:
    """The curve as a frame with columns ``iteration`` (int), ``loss`` and ``lr`` (float, NaN if absent)."""
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a train log (missing columns {', '.join(missing)})")
    return frame.astype({"iteration": "int64", "loss": "float64", "lr": "float64"})[list(COLUMNS)]


def _summary_writer(log_dir: Path):  # noqa: ANN202
    """``torch.utils.tensorboard.SummaryWriter(log_dir)``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional extra is not installed
        return None
    return SummaryWriter(str(log_dir))


class TensorBoardLog:
    """Live ``train/loss`` and ``train/lr`` scalars for TensorBoard (see the module); a no-op without
    a folder, on ranks other than 0, without the ``tensorboard`` package or with ``UPBENCH_TENSORBOARD=0``."""

    def __init__(self, log_dir: str | Path | None, rank: int = 0) -> None:
        self._writer = None
        if log_dir is not None and rank == 0 and os.environ.get("UPBENCH_TENSORBOARD", "1") != "0":
            self._writer = _summary_writer(Path(log_dir))

    @property
    def active(self) -> bool:
        return self._writer is not None

    def add(self, iteration: int, loss: float, lr: float) -> None:
        if self._writer is not None:
            self._writer.add_scalar("train/loss", loss, iteration)
            self._writer.add_scalar("train/lr", lr, iteration)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
