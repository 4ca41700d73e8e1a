"""The results store: ``results.jsonl`` (source of truth) and its Parquet/CSV exports.

Each line is one tidy row: one measurement of one cell (see ``docs/architecture.md`` for the
columns). A cell's rows are appended in one write, followed by its ``cell`` row (metric
``cell``, the wall time of the cell, and the cell's final status), so a cell without a ``cell``
row was interrupted and is run again. A run that crashed mid-write leaves at most one truncated
last line, which readers skip with a warning.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_FILE = "results.jsonl"
CELL_METRIC = "cell"

#: Column order of the exports (extra columns follow in sorted order).
COLUMNS = (
    "run",
    "suite",
    "cell_id",
    "attempt",
    "kind",
    "operator",
    "label",
    "options",
    "architecture",
    "protocol",
    "preset",
    "dataset",
    "scale",
    "seed",
    "batch",
    "in_channels",
    "lr_height",
    "lr_width",
    "guide_channels",
    "image_size",
    "device",
    "dtype",
    "threads",
    "metric",
    "value",
    "unit",
    "statistic",
    "status",
    "error",
    "git_commit",
    "upbench_version",
    "torch_version",
    "cuda_version",
    "device_name",
    "hostname",
    "time",
)
STATUSES = ("ok", "failed", "oom", "skipped")


def _clean(value: Any) -> Any:
    """JSON-safe value: NaN/inf become null, numpy scalars become Python numbers."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_rows(run_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append ``rows`` to ``run_dir/results.jsonl`` in one write and flush it to disk."""
    text = "".join(json.dumps({k: _clean(v) for k, v in row.items()}, sort_keys=False) + "\n" for row in rows)
    path = Path(run_dir) / RESULTS_FILE
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """All rows of ``run_dir/results.jsonl`` (a truncated line from a crash is skipped)."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{n}: skipping a truncated or invalid line", RuntimeWarning, stacklevel=2)
    return rows


def finished_cells(run_dir: Path) -> dict[str, str]:
    """``cell_id -> status`` of the latest attempt of every cell that has its ``cell`` row."""
    done: dict[str, str] = {}
    for row in read_rows(run_dir):
        if row.get("metric") == CELL_METRIC:
            done[row["cell_id"]] = row.get("status", "ok")
    return done


def attempts(run_dir: Path) -> dict[str, int]:
    """``cell_id -> number of attempts recorded`` (finished or not)."""
    counts: dict[str, int] = {}
    for row in read_rows(run_dir):
        counts[row["cell_id"]] = max(counts.get(row["cell_id"], 0), int(row.get("attempt", 1)))
    return counts


def read_results(run_dir: Path, *, latest: bool = True) -> pd.DataFrame:
    """The results of a run as a tidy DataFrame.

    Args:
        latest: keep only the rows of each cell's latest attempt (a failed cell that was retried
            keeps its successful rows), and only finished attempts.
    """
    rows = read_rows(run_dir)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    if "attempt" not in df:
        df["attempt"] = 1
    if latest:
        last = df.groupby("cell_id")["attempt"].transform("max")
        df = df[df["attempt"] == last]
        finished = set(df.loc[df["metric"] == CELL_METRIC, "cell_id"])
        df = df[df["cell_id"].isin(finished)]
    ordered = [c for c in COLUMNS if c in df.columns] + sorted(c for c in df.columns if c not in COLUMNS)
    return df[ordered].reset_index(drop=True)


def export(run_dir: Path) -> dict[str, Path]:
    """Write ``results.csv`` and ``results.parquet`` derived from ``results.jsonl``."""
    run_dir = Path(run_dir)
    df = read_results(run_dir, latest=False)
    paths = {"csv": run_dir / "results.csv", "parquet": run_dir / "results.parquet"}
    df.to_csv(paths["csv"], index=False)
    try:
        df.to_parquet(paths["parquet"], index=False)
    except (ImportError, ValueError) as err:  # pyarrow missing or an unconvertible column
        warnings.warn(f"results.parquet not written: {err}", RuntimeWarning, stacklevel=2)
        paths.pop("parquet")
    return paths
