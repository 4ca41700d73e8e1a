"""The learning curve of a train cell: ``cells/<id>/train_log.csv``.

One line per logged iteration (every ``train.log_every``): ``iteration,loss,lr``, the loss of that
iteration's batch (mean over processes) and the learning rate of the first parameter group that
its step used. Written once, atomically, when the cell's training ends (a resumed cell writes the
whole curve, earlier sessions included, since the history travels in the training checkpoint).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd

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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_train_log(path: str | Path) -> pd.DataFrame:
    """The curve as a frame with columns ``iteration`` (int), ``loss`` and ``lr`` (float, NaN if absent)."""
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a train log (missing columns {', '.join(missing)})")
    return frame.astype({"iteration": "int64", "loss": "float64", "lr": "float64"})[list(COLUMNS)]
