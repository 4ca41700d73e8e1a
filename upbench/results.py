"""The results store: ``results.jsonl`` (source of truth) and its Parquet/CSV exports.

Each line is one tidy row: one measurement of one cell (see ``docs/architecture.md`` for the
columns). Crash safety:

* a cell's rows are first written, atomically, to its own file ``cells/<id>/rows.jsonl`` (by
  whichever process ran it); the driver then *merges* them into ``results.jsonl`` in one append,
  the cell's ``cell`` row last (metric ``cell``: wall time, final status, and ``cell_rows``, the
  number of rows of that attempt). A cell counts as finished only when all ``cell_rows`` rows of
  one attempt are in ``results.jsonl``; a rows file not (completely) merged is merged again;
* before appending, a torn last line (a crash mid-write) is moved to ``results.jsonl.corrupt``
  with a warning, so that no row is ever glued to it;
* every line is checked against the row schema when read; a bad line is reported with its line
  number and ignored (so its cell is incomplete and runs again);
* a cell's own file that cannot be read (a broken ``rows.jsonl``, a junk ``per_image.parquet``, a
  truncated checkpoint) is moved aside to ``<name>.corrupt-<timestamp>`` with one warning
  (:func:`move_aside`) and that cell alone runs again: one broken folder never stops a run or a
  report.
* a failed write (a full disk) raises an ``OSError`` naming the file and leaves no temporary
  file (:mod:`upbench.files`).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import warnings
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from upbench.files import naming, write_text_atomic

RESULTS_FILE = "results.jsonl"
ENVIRONMENT_FILE = "environment.json"
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
    "executor",
    "time",
)
STATUSES = ("ok", "failed", "oom", "skipped")


def row(
    metric: str, value: Any, unit: str, statistic: str = "value", status: str = "ok", error: str | None = None
) -> dict[str, Any]:
    """One measurement in the row schema (the identity and provenance columns are added by whoever
    records the cell); the one builder of measurement rows."""
    return {"metric": metric, "value": value, "unit": unit, "statistic": statistic, "status": status, "error": error}


def _clean(value: Any) -> Any:
    """JSON-safe value: NaN/inf become null, numpy scalars become Python numbers."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


CORRUPT_SUFFIX = ".corrupt"
CELL_ROWS_FILE = "rows.jsonl"
#: Required columns of a row and a check of their values.
SCHEMA: dict[str, Any] = {
    "cell_id": lambda v: isinstance(v, str) and bool(v),
    "attempt": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "metric": lambda v: isinstance(v, str) and bool(v),
    "value": lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool)),
    "unit": lambda v: isinstance(v, str),
    "statistic": lambda v: isinstance(v, str),
    "status": lambda v: v in STATUSES,
}


def row_problem(row: Any) -> str:
    """Empty if ``row`` satisfies :data:`SCHEMA`, else what is wrong with it."""
    if not isinstance(row, dict):
        return f"a row must be a JSON object, got {type(row).__name__}"
    bad = [k for k, ok in SCHEMA.items() if k not in row or not ok(row[k])]
    return f"missing or invalid column(s) {', '.join(bad)}" if bad else ""


def _dumps(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps({k: _clean(v) for k, v in row.items()}, sort_keys=False) + "\n" for row in rows)


def repair_tail(path: Path) -> None:
    """Move a torn last line of ``path`` (no final newline) into ``path.corrupt``, with a warning."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with naming(path), open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        corrupt = path.with_name(path.name + CORRUPT_SUFFIX)
        with open(corrupt, "ab") as out:
            out.write(data[cut:] + b"\n")
            out.flush()
            os.fsync(out.fileno())
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    warnings.warn(
        f"{path}: the last line was torn by an interrupted write; moved to {corrupt} ({len(data) - cut} bytes)",
        RuntimeWarning,
        stacklevel=3,
    )


def append_rows(run_dir: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append ``rows`` to ``run_dir/results.jsonl`` in one write and flush it to disk (after
    moving a torn last line aside)."""
    path = Path(run_dir) / RESULTS_FILE
    repair_tail(path)
    text = _dumps(rows)
    with naming(path), open(path, "a", encoding="utf-8") as fh:  # a full disk names the file
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_cell_rows(cell_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write a cell's rows to ``cell_dir/rows.jsonl`` atomically (temporary file, fsync, rename);
    the last row must be its ``cell`` row, which gets ``cell_rows`` (the number of rows)."""
    if not rows or rows[-1].get("metric") != CELL_METRIC:
        raise ValueError("a cell's rows must end with its 'cell' row")
    rows = [*rows[:-1], {**rows[-1], "cell_rows": len(rows)}]
    return write_text_atomic(Path(cell_dir) / CELL_ROWS_FILE, _dumps(rows))


def _same_cell_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    skip = ("attempt",)
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def merge_cell_rows(run_dir: Path, cell_ids: Iterable[str], existing: list[dict[str, Any]] | None = None) -> list[str]:
    """Append the rows file of each cell in ``cell_ids`` (in that order) that is not yet completely
    in ``results.jsonl``; returns the ids merged. Each merge is a new attempt number."""
    run_dir = Path(run_dir)
    rows = read_rows(run_dir) if existing is None else existing
    complete = _complete_attempts(rows)
    latest_attempt: dict[str, int] = {}
    for r in rows:
        latest_attempt[r["cell_id"]] = max(latest_attempt.get(r["cell_id"], 0), r["attempt"])
    merged = []
    for cell_id in cell_ids:
        new = read_cell_rows(run_dir / "cells" / cell_id, cell_id)
        if not new:
            continue
        if any(_same_cell_row(new[-1], cell_row) for cell_row in complete.get(cell_id, {}).values()):
            continue  # already merged
        attempt = latest_attempt.get(cell_id, 0) + 1
        new = [{**r, "attempt": attempt} for r in new]
        append_rows(run_dir, new)
        rows += new
        complete.setdefault(cell_id, {})[attempt] = new[-1]
        latest_attempt[cell_id] = attempt
        merged.append(cell_id)
    return merged


def read_cell_rows(cell_dir: Path, cell_id: str) -> list[dict[str, Any]]:
    """The rows of ``cell_dir/rows.jsonl`` as :func:`write_cell_rows` wrote them, or ``[]`` when
    there is none. A file that cannot be the cell's rows (empty, not JSON, a row outside the
    schema, no ``cell`` row last, another cell's id, fewer rows than its ``cell_rows``) is moved
    aside with one warning, so that one broken cell folder never stops a run: that cell simply
    counts as not run (unless its rows were merged before) and runs again."""
    path = Path(cell_dir) / CELL_ROWS_FILE
    if not path.is_file():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        problem = _cell_rows_problem(rows, cell_id)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        problem = f"unreadable ({type(err).__name__}: {err})"
    if not problem:
        return rows
    move_aside(path, problem, "the cell counts as not run")
    return []


def _cell_rows_problem(rows: list[Any], cell_id: str) -> str:
    if not rows:
        return "empty"
    bad = next((f"row {n}: {p}" for n, r in enumerate(rows, 1) if (p := row_problem(r))), "")
    if bad:
        return bad
    last = rows[-1]
    if last["metric"] != CELL_METRIC:
        return "its last row is not the cell's 'cell' row (a torn write?)"
    if any(r["cell_id"] != cell_id for r in rows):
        return f"it holds rows of cell {last['cell_id']}, not of {cell_id}"
    if last.get("cell_rows", len(rows)) != len(rows):
        return f"{len(rows)} rows where its cell row says {last['cell_rows']}"
    return ""


def move_aside(path: Path, problem: str, consequence: str) -> Path:
    """Rename a broken file of a run to ``<name>.corrupt-<timestamp>`` (kept for inspection, never
    read again) with one warning naming the file, what is wrong with it and what happens now."""
    path = Path(path)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}-{stamp}-{n}")
    os.replace(path, target)
    first = problem.splitlines()[0] if problem else "unreadable"
    warnings.warn(f"{path}: {first}; moved to {target.name}; {consequence}", RuntimeWarning, stacklevel=3)
    return target


#: Files of a finished cell that the reports need: one moved aside (:func:`move_aside`) and not
#: written again makes the cell need a rerun (:func:`needs_rerun`).
CELL_OUTPUTS = ("per_image.parquet", "model.pt")


def needs_rerun(run_dir: Path, cell_id: str) -> list[str]:
    """The outputs of cell ``cell_id`` that were moved aside as corrupt and not written again since:
    a cell with any is run again even if its rows say ``ok`` (its rows stay until then)."""
    cell_dir = Path(run_dir) / "cells" / cell_id
    if not cell_dir.is_dir():
        return []
    return [
        name
        for name in CELL_OUTPUTS
        if not (cell_dir / name).exists() and any(cell_dir.glob(f"{name}{CORRUPT_SUFFIX}-*"))
    ]


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """All valid rows of ``run_dir/results.jsonl`` (or of ``results.jsonl.gz``, the compressed copy
    a report folder ships); a torn or invalid line is skipped with a warning naming its line number
    (its cell is then incomplete and runs again)."""
    path = Path(run_dir) / RESULTS_FILE
    packed = path.with_name(RESULTS_FILE + ".gz")
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    elif packed.is_file():
        path, text = packed, gzip.decompress(packed.read_bytes()).decode("utf-8")
    else:
        return []
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{n}: skipping a truncated or invalid line", RuntimeWarning, stacklevel=2)
            continue
        if isinstance(row, dict) and "attempt" not in row:
            row["attempt"] = 1
        problem = row_problem(row)
        if problem:
            warnings.warn(
                f"{path}:{n}: skipping a row that does not fit the schema: {problem}", RuntimeWarning, stacklevel=2
            )
            continue
        rows.append(row)
    return rows


def _complete_attempts(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """``cell_id -> {attempt: cell row}`` of the attempts whose rows are all present."""
    counts: dict[tuple[str, int], int] = {}
    cell_rows: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["cell_id"], r["attempt"])
        counts[key] = counts.get(key, 0) + 1
        if r["metric"] == CELL_METRIC:
            cell_rows[key] = r
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for key, r in cell_rows.items():
        expected = r.get("cell_rows")
        if expected is None or counts[key] == expected:  # rows of old runs have no count
            out.setdefault(key[0], {})[key[1]] = r
    return out


def finished_cells(run_dir: Path) -> dict[str, str]:
    """``cell_id -> status`` of the latest complete attempt of every cell."""
    return {
        cid: byattempt[max(byattempt)].get("status", "ok")
        for cid, byattempt in _complete_attempts(read_rows(run_dir)).items()
    }


def attempts(run_dir: Path) -> dict[str, int]:
    """``cell_id -> number of attempts recorded`` (finished or not)."""
    counts: dict[str, int] = {}
    for row in read_rows(run_dir):
        counts[row["cell_id"]] = max(counts.get(row["cell_id"], 0), int(row.get("attempt", 1)))
    return counts


CURRENT_FILE = "cells.json"


def write_environment(run_dir: Path, env: dict[str, Any]) -> None:
    """Record where and with what the run ran (``environment.json``)."""
    write_text_atomic(run_dir / ENVIRONMENT_FILE, json.dumps(env, indent=2, sort_keys=True, default=str) + "\n")


def read_environment(run_dir: Path) -> dict[str, Any]:
    """``environment.json`` of ``run_dir``; ``{}`` where it is missing or unreadable."""
    try:
        return json.loads((run_dir / ENVIRONMENT_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_current_cells(run_dir: Path, cell_ids: Iterable[str], protocol_version: int) -> None:
    """Record the ids of the cells of the suite as last run (``cells.json``); others are stale."""
    data = {"protocol_version": protocol_version, "cells": sorted(set(cell_ids))}
    write_text_atomic(Path(run_dir) / CURRENT_FILE, json.dumps(data, indent=1) + "\n")


def current_cells(run_dir: Path) -> set[str] | None:
    """The ids recorded by :func:`write_current_cells`, or ``None`` for a run without the file."""
    path = Path(run_dir) / CURRENT_FILE
    return set(json.loads(path.read_text())["cells"]) if path.is_file() else None


def read_results(run_dir: Path, *, latest: bool = True) -> pd.DataFrame:
    """The results of a run as a tidy DataFrame.

    Args:
        latest: keep only the rows of each cell's latest complete attempt (a failed cell that was
            retried keeps its successful rows), and leave out stale cells (not in ``cells.json``).
    """
    rows = latest_rows(run_dir) if latest else read_rows(run_dir)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    ordered = [c for c in COLUMNS if c in df.columns] + sorted(c for c in df.columns if c not in COLUMNS)
    return df[ordered].reset_index(drop=True)


def latest_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of each cell's latest complete attempt, stale cells (not in ``cells.json``) left out
    with a warning: what :func:`read_results` reads and a report ships."""
    rows = read_rows(run_dir)
    complete = _complete_attempts(rows)
    keep = {(cid, max(byattempt)) for cid, byattempt in complete.items()}
    current = current_cells(run_dir)
    stale = {cid for cid, _ in keep if current is not None and cid not in current}
    if stale:
        warnings.warn(
            f"{run_dir}: {len(stale)} cell(s) were made with other settings, defaults or protocol version "
            "(stale) and are left out",
            RuntimeWarning,
            stacklevel=3,
        )
    return [r for r in rows if (r["cell_id"], r["attempt"]) in keep and r["cell_id"] not in stale]


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
