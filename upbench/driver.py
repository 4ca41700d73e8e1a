"""The driver of a run: plan the suite's cells, lock the run folder, dispatch the unfinished cells
through an executor, merge their rows into ``RUN_DIR/results.jsonl`` and summarise.

It sits above the executors (:mod:`upbench.executors`), which run each cell with
:func:`upbench.cell.run_cell`; what a cell does is not known here. Layout of a run directory::

    RUN_DIR/suite.toml          the resolved suite (after --set overrides)
    RUN_DIR/environment.json    where and with what it ran
    RUN_DIR/results.jsonl       the source of truth, merged cell by cell from the rows files
    RUN_DIR/results.{csv,parquet}  exports derived from it
    RUN_DIR/cells.json          ids of the suite's current cells (other cells in results are stale)
    RUN_DIR/.lock               held by the one driver working in this folder
    RUN_DIR/cells/<cell_id>/    the cell's own files (see upbench.cell) and rows.jsonl, its rows
                                as the worker recorded them (see upbench.executors.record)

Re-running the same suite into the same directory skips every finished cell; an interrupted
cell restarts from its last training checkpoint. A cell that fails (or runs out of memory) is
recorded with its status and error, and the suite goes on; it is retried on the next run, and so
is a finished cell whose per-image records or model were moved aside as corrupt.

A run folder belongs to one suite: another suite, or settings under which finished cells would
no longer be planned (stale: a ``--set`` change, a removed operator, another device or protocol
version), are refused before any work (:func:`folder_conflict`), unless ``replace_stale``; a
suite extended with new cells (another seed or operator) runs into the folder as it is.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
import torch

from upbench import __version__, results
from upbench.errors import ConfigError
from upbench.files import write_text_atomic
from upbench.runlock import RunLock
from upbench.suite import Cell, Suite, dump_toml

DEFAULT_RUNS_DIR = Path("runs")


@dataclass
class RunSummary:
    """What a call to :func:`run_suite` did."""

    suite: str
    run_dir: Path
    total: int
    already_done: int = 0
    ran: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    stale: int = 0

    @property
    def results_path(self) -> Path:
        return self.run_dir / results.RESULTS_FILE

    def describe(self) -> str:
        lines = [
            f"suite '{self.suite}': {self.total} cell(s): {self.already_done} already done, {self.ran} run now "
            f"({self.failed} failed) in {self.seconds:.1f} s",
            f"results: {self.results_path} (+ results.csv, results.parquet)",
        ]
        if self.stale:
            lines.append(
                f"{self.stale} stale cell(s) in {self.results_path.name} were made with other settings, defaults or "
                "protocol version; reports leave them out"
            )
        lines += [f"  failed: {f}" for f in self.failures]
        return "\n".join(lines)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a CUDA request without CUDA is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available on this machine (use cpu or auto)")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"--device {device!r} is not valid; use cpu, cuda, cuda:N or auto")
    return device


def plan_device(device: str) -> str:
    """The device ``plan`` checks a suite for, as :func:`resolve_device` but a CUDA device that this
    machine lacks is kept: a GPU run may be planned on a machine without one (what needs the GPU
    itself, such as its memory, is then not checked)."""
    named = device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())
    if named and not torch.cuda.is_available():
        return device
    return resolve_device(device)


def _environment(device: str) -> dict[str, Any]:
    from upbench.profiling import environment

    env = dict(environment(device))
    env.setdefault("upbench_version", __version__)
    return env


class _OrderedMerger:
    """Merges finished cells into ``results.jsonl`` in plan order, whatever order they finish in."""

    def __init__(self, run_dir: Path, order: list[str]) -> None:
        self.run_dir, self.order, self.finished, self.next = run_dir, order, set(), 0

    def done(self, cell_id: str) -> None:
        self.finished.add(cell_id)
        start = self.next
        while self.next < len(self.order) and self.order[self.next] in self.finished:
            self.next += 1
        results.merge_cell_rows(self.run_dir, self.order[start : self.next])

    def flush(self) -> None:
        """Merge every finished cell still waiting for an earlier one (an interrupted run)."""
        results.merge_cell_rows(self.run_dir, [c for c in self.order[self.next :] if c in self.finished])


def run_suite(
    suite: Suite,
    *,
    out_dir: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    executor: str | None = None,
    executor_options: dict[str, Any] | None = None,
    dry_run: bool = False,
    command: str | None = None,
    replace_stale: bool = False,
) -> RunSummary:
    """Run every unfinished cell of ``suite`` into ``out_dir`` (default ``runs/<suite name>``).

    ``executor`` (``local``, ``ray``, ``slurm``; default: the suite's ``[executor]`` table, else
    ``local``) and ``executor_options`` (its keys, over the table) choose where cells run; see
    :mod:`upbench.executors`. One driver per folder: a second one raises ``RunLockedError``.
    ``command`` (the command line that started the run, when there is one) is recorded in
    ``environment.json`` and shown in the report; a resumed run keeps the first command.
    ``replace_stale``: run even where :func:`folder_conflict` refuses (the finished cells no longer
    planned become stale and leave the report; the folder's command becomes this one).
    """
    from upbench.executors import make_executor
    from upbench.executors.ddp import ddp_problems

    device = resolve_device(device)
    run_dir = Path(out_dir) if out_dir is not None else DEFAULT_RUNS_DIR / suite.name
    settings = {**dataclasses.asdict(suite.config.executor)}
    settings.update({k: v for k, v in (executor_options or {}).items() if v is not None})
    ex = make_executor(executor or settings["name"], settings, dry_run=dry_run)
    problems = ddp_problems(suite.cells(device=device), ex.name, device, settings.get("gpus_per_node", 0))
    if problems:
        raise ConfigError("\n".join(problems))
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir}: is a file, not a folder")
    conflict = folder_conflict(suite, run_dir, device)
    if conflict and not replace_stale:
        raise ConfigError(conflict)
    if dry_run:
        return _dry_run(suite, run_dir, device, ex)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        return _run_locked(suite, run_dir, device, progress, ex, command)


def folder_conflict(suite: Suite, run_dir: Path, device: str) -> str:
    """Why ``suite`` may not run into ``run_dir`` as it is (one line), or ``""``: the folder holds
    another suite (by name), or finished cells of its current plan (``cells.json``) that ``suite``
    no longer plans (their ids are hashes of their resolved configurations, so a changed setting
    makes new cells and leaves the old ones stale). Names the keys of ``suite.toml`` that changed
    and the ways out."""
    from upbench.suite.expansion import PROTOCOL_VERSION

    stored = _stored_suite(run_dir)
    if stored is None:
        return ""
    new = tomllib.loads(dump_toml(suite.data))
    ways = "run into a new --out, or add --replace-stale to run here anyway (the earlier results then leave the report)"
    old_name = stored.get("suite", {}).get("name")
    if old_name is not None and old_name != suite.name:
        return f"{run_dir} holds suite '{old_name}', not '{suite.name}' ({_changes(stored, new)}); {ways}"
    planned = {c.cell_id for c in suite.all_cells(device=device)}
    current = results.current_cells(run_dir)
    lost = [c for c in results.finished_cells(run_dir) if c not in planned and (current is None or c in current)]
    if not lost:
        return ""
    what = _changes(stored, new)
    if what == "no key changed":
        try:
            was = json.loads((run_dir / results.CURRENT_FILE).read_text())["protocol_version"]
        except (OSError, ValueError, KeyError, TypeError):
            was = None
        env_device = results.read_environment(run_dir).get("device")
        if was is not None and was != PROTOCOL_VERSION:
            what = f"protocol_version {was} -> {PROTOCOL_VERSION}"
        elif env_device and env_device != device:
            what = f"device {env_device} -> {device}"
        else:
            what = "suite.toml is the same: the code's defaults changed"
    return f"{run_dir}: {len(lost)} finished cell(s) would become stale ({what}); {ways}"


def _stored_suite(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/suite.toml`` as written by the last run; None without one, ``{}`` if unreadable."""
    path = run_dir / "suite.toml"
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``key: old -> new`` of each changed leaf of two suites (dotted keys; at most 6 shown)."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(old), flat(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "unset") != b.get(k, "unset"))
    shown = [f"{k}: {a.get(k, 'unset')!r} -> {b.get(k, 'unset')!r}" for k in keys[:6]]
    more = f", and {len(keys) - 6} more" if len(keys) > 6 else ""
    return "changed " + ", ".join(shown) + more if keys else "no key changed"


def _todo(suite: Suite, run_dir: Path, device: str) -> tuple[list[Cell], list[Cell], dict[str, int]]:
    """``(all cells, cells to run, attempts so far)`` after merging rows a killed run left unmerged."""
    everything = suite.all_cells(device=device)
    cells = [c for c in everything if c.matches(suite.only)]
    if (run_dir / results.RESULTS_FILE).exists() or (run_dir / "cells").is_dir():
        results.merge_cell_rows(run_dir, [c.cell_id for c in everything])
    done = results.finished_cells(run_dir)
    todo = [c for c in cells if done.get(c.cell_id) != "ok" or results.needs_rerun(run_dir, c.cell_id)]
    return everything, todo, results.attempts(run_dir)


def _dry_run(suite: Suite, run_dir: Path, device: str, ex: Any) -> RunSummary:
    from upbench.executors import CellTask

    cells = [c for c in suite.all_cells(device=device) if c.matches(suite.only)]
    done = results.finished_cells(run_dir) if run_dir.is_dir() else {}
    todo = [c for c in cells if done.get(c.cell_id) != "ok" or results.needs_rerun(run_dir, c.cell_id)]
    print(ex.describe([CellTask(c, suite, run_dir, device) for c in todo]))
    return RunSummary(suite.name, run_dir, total=len(cells), already_done=len(cells) - len(todo))


def _run_locked(
    suite: Suite, run_dir: Path, device: str, progress: bool, ex: Any, command: str | None = None
) -> RunSummary:
    from tqdm.auto import tqdm

    from upbench.executors import CellTask
    from upbench.executors.record import record_lost
    from upbench.suite.expansion import PROTOCOL_VERSION

    same = _stored_suite(run_dir) == tomllib.loads(dump_toml(suite.data))
    write_text_atomic(run_dir / "suite.toml", dump_toml(suite.data))
    env = {**_environment(device), "executor": ex.name}
    if same:  # the first command, kept on resume; a suite extended or replaced here records the new one
        command = results.read_environment(run_dir).get("command") or command
    if command:
        env["command"] = command
    results.write_environment(run_dir, env)
    everything, todo, tried = _todo(suite, run_dir, device)
    results.write_current_cells(run_dir, [c.cell_id for c in everything], PROTOCOL_VERSION)
    total = sum(c.matches(suite.only) for c in everything)
    summary = RunSummary(suite.name, run_dir, total=total, already_done=total - len(todo))
    current = {c.cell_id for c in everything}
    summary.stale = len({cid for cid in tried if cid not in current})
    local = ex.name == "local"
    tasks = [
        CellTask(c, suite, run_dir, device, env, tried.get(c.cell_id, 0) + 1, progress=progress and local) for c in todo
    ]
    merger = _OrderedMerger(run_dir, [t.cell_id for t in tasks])
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(tasks), desc=f"{suite.name}", unit="cell", disable=not progress or not tasks, dynamic_ncols=True
    )

    def on_done(task: Any, outcome: Any) -> None:
        if outcome.lost:
            record_lost(task, outcome.lost)
        merger.done(task.cell_id)
        cell = task.cell
        bar.update(1)
        bar.set_postfix_str(" ".join(cell.label_fields()[:5]) + f" {outcome.status}")
        if progress and not local:  # cells finish out of order elsewhere: one line each
            bar.write(f"{outcome.status:6} {cell.cell_id} {' '.join(cell.label_fields())} on {outcome.host}")
        summary.ran += 1
        if outcome.status != "ok":
            summary.failed += 1
            summary.failures.append(
                f"{cell.cell_id} {' '.join(cell.label_fields())}: {outcome.status} "
                f"(see {run_dir / 'cells' / cell.cell_id / 'error.txt'})"
            )

    try:
        ex.run(tasks, on_done)
    finally:
        merger.flush()
        bar.close()
    summary.seconds = time.perf_counter() - t0
    results.export(run_dir)
    return summary
