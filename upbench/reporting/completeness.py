"""Which planned cells a report has no results for, and why.

A report of a partial or troubled run must not look complete: every cell of the suite as last run
(``RUN_DIR/cells.json``) that has no ``ok`` measurement row in the report is listed with its
reason (never run, started but not finished, failed or out of memory, its rows unreadable), and so
is a cell whose results are there but whose per-image records or model were moved aside as
corrupt (it needs a rerun: :func:`upbench.results.needs_rerun`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from upbench.results import CELL_METRIC, CELL_ROWS_FILE, CORRUPT_SUFFIX, current_cells, needs_rerun


def unfinished_cells(run_dir: Path, rows: pd.DataFrame) -> list[str]:
    """One Markdown line per planned cell without results (or needing a rerun), sorted by id;
    ``[]`` for a run folder without ``cells.json`` (an old run, a shipped report folder)."""
    planned = current_cells(run_dir)
    if not planned:
        return []
    measured = rows[(rows["status"] == "ok") & (rows["metric"] != CELL_METRIC)]
    with_results = set(measured["cell_id"].astype(str))
    cell_rows = rows[rows["metric"] == CELL_METRIC].drop_duplicates("cell_id", keep="last").set_index("cell_id")
    lines = []
    for cell_id in sorted(planned):
        if cell_id in with_results:
            moved = needs_rerun(run_dir, cell_id)
            if moved:
                lines.append(_line(run_dir, cell_id, f"needs rerun: {', '.join(moved)} moved aside as corrupt"))
            continue
        lines.append(_line(run_dir, cell_id, _reason(run_dir, cell_id, cell_rows)))
    return lines


def _reason(run_dir: Path, cell_id: str, cell_rows: pd.DataFrame) -> str:
    cell_dir = run_dir / "cells" / cell_id
    if cell_id in cell_rows.index:
        r = cell_rows.loc[cell_id]
        error = str(r.get("error") or "").strip().splitlines()
        return f"{r['status']}" + (f": {error[0]}" if error else "")
    if any(cell_dir.glob(f"{CELL_ROWS_FILE}{CORRUPT_SUFFIX}-*")):
        return f"needs rerun: its {CELL_ROWS_FILE} was unreadable (moved aside)"
    if cell_dir.is_dir():
        return "started, not finished (interrupted or its worker lost)"
    return "never run"


def _line(run_dir: Path, cell_id: str, reason: str) -> str:
    return f"- `{cell_id}` {_describe(run_dir / 'cells' / cell_id)}: {reason}".replace("` :", "`:")


def _describe(cell_dir: Path) -> str:
    """``label architecture protocol xscale seed s`` from the cell's ``config.json`` (empty without)."""
    try:
        c = json.loads((cell_dir / "config.json").read_text(encoding="utf-8"))
        fields = [c["label"], c["architecture"], c["protocol"], f"x{c['scale']}", f"seed {c['seed']}"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return " ".join(str(f) for f in fields if f not in ("none", None))
