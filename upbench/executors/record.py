"""The worker side of every executor: run a task's cell and record its rows in the cell's folder.

:func:`run_and_record` calls :func:`upbench.cell.run_cell`, adds the run's identity and provenance
columns to every row (run, suite, cell id, attempt, git commit, versions, host, executor) and writes
them atomically to ``cells/<id>/rows.jsonl``, which the driver merges into ``results.jsonl``.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upbench import __version__, results
from upbench.cell import cell_identity, run_cell


def identity(task: Any) -> dict[str, Any]:
    """The identity and provenance columns of every row of ``task``'s cell."""
    env = task.env
    ident: dict[str, Any] = {
        "run": Path(task.run_dir).name,
        "suite": task.suite.name,
        "cell_id": task.cell_id,
        "attempt": task.attempt,
        **cell_identity(task.cell.config),
    }
    for key in ("git_commit", "torch_version", "cuda_version", "device_name"):
        ident[key] = env.get(key)
    ident["hostname"] = socket.gethostname()  # where the cell ran (a worker's host under ray or slurm)
    ident["executor"] = env.get("executor", "local")
    ident["upbench_version"] = __version__
    return ident


def run_and_record(task: Any, device: str, progress: bool = True) -> str:
    """Run ``task``'s cell on ``device`` and write its rows (its ``cell`` row last) atomically to
    ``cells/<id>/rows.jsonl``; returns its status. In a multi-process cell only rank 0 writes."""
    from upbench.training.distributed import rank_and_world

    cell_dir = Path(task.run_dir) / "cells" / task.cell_id
    ident = identity(task)
    rows = run_cell(task.cell.config, cell_dir, device=device, progress=progress)
    if rank_and_world()[0] == 0:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        results.write_cell_rows(cell_dir, [{**ident, **r, "time": now} for r in rows])
    return rows[-1]["status"]


def record_lost(task: Any, error: str) -> None:
    """Record a cell whose worker was lost (it wrote no rows): a ``failed`` cell row, retried next run."""
    cell_dir = Path(task.run_dir) / "cells" / task.cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / "error.txt").write_text(error + "\n")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    row = results.row(results.CELL_METRIC, None, "s", status="failed", error=error)
    results.write_cell_rows(cell_dir, [{**identity(task), **row, "time": now}])
