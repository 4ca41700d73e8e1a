"""Run one cell of any kind and return its rows; failures come back as rows, not exceptions."""

from __future__ import annotations

import errno
import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from upbench.cell.ops import run_ops_cell
from upbench.cell.profile import PROFILE_METRIC
from upbench.cell.train import run_train_cell
from upbench.files import STORAGE_ERRNOS, os_error_in, write_text_atomic
from upbench.results import CELL_METRIC, row

CONFIG_FILE = "config.json"

#: ``kind -> fn(config, cell_dir, device, progress) -> measurement rows``.
KINDS: dict[str, Callable[[dict[str, Any], Path, str, bool], list[dict[str, Any]]]] = {
    "train": run_train_cell,
    "ops": run_ops_cell,
}


def run_cell(
    config: dict[str, Any], cell_dir: str | Path, *, device: str, progress: bool = True
) -> list[dict[str, Any]]:
    """Run the cell ``config`` in ``cell_dir``: its measurement rows, then its ``cell`` row (wall
    time, ``status`` ``ok``, ``failed`` or ``oom``, and the error). Writes ``config.json`` first.
    A train cell whose profiling alone failed keeps its accuracy rows beside a failed ``profile``
    row; its cell row takes that row's status (see :mod:`upbench.cell.train`).

    An exception becomes a ``failed`` (or ``oom``) cell row with its traceback in ``error.txt``, so
    the caller goes on with the next cell; except a full disk, quota or read-only filesystem
    (:data:`upbench.files.STORAGE_ERRNOS`) or a permission error on a file in ``cell_dir`` (its
    folder is not writable), raised as that ``OSError``: the run cannot record anything either, so it
    stops with one line (exit 2) and resumes once that is fixed. In a process of a
    multi-process cell it is raised instead (the other processes wait for this one: the launcher
    must stop them), after writing ``error_rank<r>.txt``. Ranks other than 0 return only the cell
    row and write no files.
    """
    from upbench.training.distributed import rank_and_world

    cell_dir = Path(cell_dir)
    cell_dir.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()  # a process of a multi-process cell: rank 0 writes its files
    if rank == 0:
        write_config(cell_dir, config)
    t0 = time.perf_counter()
    status, error = "ok", None
    try:
        rows = KINDS[config["kind"]](config, cell_dir, device, progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded as a result row: the suite goes on
        fs = os_error_in(exc)
        denied = fs is not None and fs.errno in (errno.EACCES, errno.EPERM) and _inside(fs.filename, cell_dir)
        if fs is not None and (fs.errno in STORAGE_ERRNOS or denied):
            if fs is exc:  # a full disk, a read-only folder, the cell's own files: nothing can be recorded
                raise
            raise fs from exc
        if world > 1:  # the other processes may wait for this one: fail the process, the launcher stops them
            write_text_atomic(cell_dir / f"error_rank{rank}.txt", traceback.format_exc())
            raise
        status, error = _status_of(exc), f"{type(exc).__name__}: {exc}".strip()
        write_text_atomic(cell_dir / "error.txt", traceback.format_exc())
        rows = []
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    if status == "ok" and any(r.get("status") == "oom" for r in rows):
        status = "oom"
    profile = next((r for r in rows if r.get("metric") == PROFILE_METRIC), None)  # only a failed profile has one
    if profile is not None:  # not ok, so the next run takes it up; its accuracy rows are kept and reported
        status = profile["status"]
        error = f"profiling failed, accuracy kept (the next run profiles again): {profile['error']}"
        if rank == 0:
            (cell_dir / "error.txt").write_text(error + "\n")
    return [*rows, row(CELL_METRIC, time.perf_counter() - t0, "s", status=status, error=error)]


def _inside(filename: object, folder: Path) -> bool:
    """Whether an error's file name is in ``folder`` (the cell's own files, not a dataset's)."""
    if not isinstance(filename, str | bytes | os.PathLike):
        return False
    return Path(os.path.abspath(os.fsdecode(filename))).is_relative_to(Path(os.path.abspath(folder)))


def _status_of(exc: BaseException) -> str:
    oom = getattr(torch, "OutOfMemoryError", None)
    if (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower():
        return "oom"
    return "failed"


def write_config(cell_dir: str | Path, config: dict[str, Any]) -> Path:
    """``cell_dir/config.json``: the resolved configuration (read back by reports)."""
    text = json.dumps(config, indent=2, sort_keys=True, default=str) + "\n"
    return write_text_atomic(Path(cell_dir) / CONFIG_FILE, text)


def read_config(cell_dir: str | Path) -> dict[str, Any]:
    """The configuration :func:`write_config` wrote."""
    return json.loads((Path(cell_dir) / CONFIG_FILE).read_text())


def cell_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The identity columns a cell's configuration gives each of its rows (the run's own columns,
    run, suite, cell id, attempt and provenance, are added by whoever records the rows)."""
    c = config
    ident: dict[str, Any] = {
        "kind": c["kind"],
        "operator": c["operator"],
        "label": c["label"],
        "options": json.dumps(c["options"], sort_keys=True),
        "architecture": c["architecture"],
        "protocol": c["protocol"],
        "preset": c["preset"],
        "dataset": c.get("dataset", {}).get("name", "none"),
        "scale": c["scale"],
        "seed": c["seed"],
        "device": c["device"],
        "threads": torch.get_num_threads(),  # per process
    }
    if c["kind"] == "ops":
        b, ch, h, w, g = c["size"]
        ident.update(batch=b, in_channels=ch, lr_height=h, lr_width=w, guide_channels=g, dtype=c["ops"]["dtype"])
    else:
        from upbench.training import TrainConfig

        train = TrainConfig(**c["train"])
        ident.update(dtype=train.compute_dtype(c["device"]), world_size=train.world_size)
    return ident
