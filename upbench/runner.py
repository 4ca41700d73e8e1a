"""The resumable suite runner: cells -> tidy rows in ``RUN_DIR/results.jsonl``.

This is the one module that wires the pipeline together: dataset -> model(backbone, decoder,
upsampler) -> training -> metrics and profilers -> rows. Layout of a run directory::

    RUN_DIR/suite.toml          the resolved suite (after --set overrides)
    RUN_DIR/environment.json    where and with what it ran
    RUN_DIR/results.jsonl       the source of truth, merged cell by cell from the rows files
    RUN_DIR/results.{csv,parquet}  exports derived from it
    RUN_DIR/cells.json          ids of the suite's current cells (other cells in results are stale)
    RUN_DIR/.lock               held by the one runner working in this folder
    RUN_DIR/cells/<cell_id>/    config.json, rows.jsonl, model.pt, per_image.parquet (train cells: the
                                per-image metric counts, see upbench.metrics.per_image), checkpoints/,
                                train_log.csv (train cells: loss and lr per logged iteration),
                                error.txt (if it failed)
                                pretrained.txt (keys loaded, missing, unexpected; with model.pretrained)

Re-running the same suite into the same directory skips every finished cell; an interrupted
cell restarts from its last training checkpoint. A cell that fails (or runs out of memory) is
recorded with its status and error, and the suite goes on; it is retried on the next run.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from upbench import __version__, results
from upbench.errors import ConfigError
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


def _environment(device: str) -> dict[str, Any]:
    from upbench.profiling import environment

    env = dict(environment(device))
    env.setdefault("upbench_version", __version__)
    return env


def _identity(run_dir: Path, suite: Suite, cell: Cell, attempt: int, env: dict[str, Any]) -> dict[str, Any]:
    c = cell.config
    ident: dict[str, Any] = {
        "run": run_dir.name,
        "suite": suite.name,
        "cell_id": cell.cell_id,
        "attempt": attempt,
        "kind": cell.kind,
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
    if cell.kind == "ops":
        b, ch, h, w, g = c["size"]
        ident.update(batch=b, in_channels=ch, lr_height=h, lr_width=w, guide_channels=g, dtype=c["ops"]["dtype"])
    else:
        from upbench.training import TrainConfig

        train = TrainConfig(**c["train"])
        ident.update(dtype=train.compute_dtype(c["device"]), world_size=train.world_size)
    for key in ("git_commit", "torch_version", "cuda_version", "device_name"):
        ident[key] = env.get(key)
    ident["hostname"] = socket.gethostname()  # where the cell ran (a worker's host under ray or slurm)
    ident["executor"] = env.get("executor", "local")
    ident["upbench_version"] = __version__
    return ident


def _cell_row(
    metric: str, value: Any, unit: str, statistic: str = "value", status: str = "ok", error: str | None = None
) -> dict[str, Any]:
    return {"metric": metric, "value": value, "unit": unit, "statistic": statistic, "status": status, "error": error}


# --------------------------------------------------------------------------- cell kinds
def _run_ops_cell(cell: Cell, device: str) -> list[dict[str, Any]]:
    from upbench.profiling import profile_operator

    c = cell.config
    b, ch, h, w, g = c["size"]
    ops = c["ops"]
    return profile_operator(
        c["operator"],
        scale=c["scale"],
        in_channels=ch,
        lr_size=(h, w),
        guide_channels=g,
        batch=b,
        device=device,
        dtype=getattr(torch, ops["dtype"]),
        options=c["options"],
        warmup=ops["warmup"],
        iters=ops["iters"],
        modes=tuple(ops["modes"]),
    )


def build_cell_model(config: dict[str, Any], num_classes: int) -> torch.nn.Module:
    """The model of a train cell (also used by reports to reload ``model.pt``)."""
    from upbench.architectures import build_model

    plain = config["architecture"] == "plain"
    return build_model(
        config["architecture"],
        operator=config["operator"],
        num_classes=num_classes,
        preset=config["preset"],
        scale=config["scale"] if plain else None,
        protocol=None if plain else config["protocol"],
        operator_options=config["options"],
    )


def _run_train_cell(cell: Cell, cell_dir: Path, device: str, progress: bool) -> list[dict[str, Any]]:
    from upbench.data import build_dataset, dataset_info
    from upbench.training import TrainConfig, diagnostics, evaluate, train
    from upbench.training.checkpoint import save_atomic
    from upbench.training.distributed import rank_and_world
    from upbench.training.train_log import FILE_NAME as TRAIN_LOG
    from upbench.training.train_log import write_train_log

    c = cell.config
    main = rank_and_world()[0] == 0  # in a multi-process cell, rank 0 writes files and profiles
    ds = c["dataset"]
    root = ds["root"] or None
    info = dataset_info(ds["name"])
    train_set = build_dataset(ds["name"], split="train", root=root, **ds["train"])
    val_set = build_dataset(ds["name"], split="val", root=root, **ds["val"])

    torch.manual_seed(c["seed"])
    model = build_cell_model(c, info.num_classes)
    pretrained = c.get("model", {}).get("pretrained", "")
    if pretrained:
        from upbench.architectures.pretrained import load_pretrained
        from upbench.architectures.shipped import resolve_pretrained

        path = resolve_pretrained(pretrained, c["architecture"], c["preset"])
        summary = load_pretrained(model, path).summary()
        if main:
            (cell_dir / "pretrained.txt").write_text(summary + "\n")
    model = model.to(device)
    tcfg = TrainConfig(**c["train"])
    initial = diagnostics.snapshot(model.upsamplers())  # built from the seed, so also right on a resume
    result = train(
        model,
        train_set,
        tcfg,
        checkpoint_dir=cell_dir / "checkpoints",
        progress=progress,
        ignore_index=info.ignore_index,
        tensorboard_dir=cell_dir / "tensorboard",  # written only when the tensorboard extra is installed
    )
    ev = c["eval"]
    scores = evaluate(
        model,
        val_set,
        info.num_classes,
        ignore_index=info.ignore_index,
        mode=ev["mode"],
        crop_size=ev["crop_size"],
        stride=ev["stride"],
        per_image=True,
        **c.get("metrics", {}),
    )
    per_image = scores.pop("per_image")
    if not main:
        return []
    save_atomic(model.state_dict(), cell_dir / "model.pt")
    _write_per_image(cell_dir, per_image)
    write_train_log(cell_dir / TRAIN_LOG, result.loss_history, result.lr_history)

    rows = [
        _cell_row(m, scores[m], "fraction") for m in ("mIoU", "aAcc", "mAcc", "BF", "BIoU", "BIoU_3px") if m in scores
    ]
    rows.append(_cell_row("BF_tolerance_px", scores.get("BF_tolerance_px"), "px"))
    for k, v in enumerate(scores.get("IoU", [])):
        rows.append(_cell_row(f"IoU_class_{k}", v, "fraction"))
    rows.append(_cell_row("train_time", result.wall_time_s, "s"))  # the trainer's, summed over resumed sessions
    final_loss = getattr(result, "final_loss", None)
    if final_loss is not None:
        rows.append(_cell_row("final_loss", float(final_loss), "loss"))
    change = diagnostics.relative_weight_change(initial, model.upsamplers())
    if change is not None:
        rows.append(_cell_row("operator_weight_change", change, "fraction"))
    trend = diagnostics.loss_trend(result.loss_history)
    if trend is not None:
        rows.append(_cell_row("loss_trend_last10", trend, "fraction"))
    if c["profile"]["enabled"]:
        rows += _profile_model(model, c, val_set, device)
    return rows


def _profile_model(model: torch.nn.Module, c: dict[str, Any], val_set: Any, device: str) -> list[dict[str, Any]]:
    """Params of model and operator(s), GMACs and latency of the model at batch 1."""
    from upbench.profiling import count_macs, count_params, measure_latency

    prof = c["profile"]
    model.eval()
    image = val_set[0][0]
    size = prof["image_size"] or None
    h, w = (size, size) if size else tuple(image.shape[-2:])
    x = torch.randn(1, 3, h, w, device=device)
    p = count_params(model)
    rows = [_cell_row("params", p["total"], "count"), _cell_row("params_trainable", p["trainable"], "count")]
    rows.append(_cell_row("operator_params", operator_params(model), "count"))
    macs = count_macs(model, (x,))
    rows.append(_cell_row("gmacs", macs.total / 1e9, "GMAC"))
    if macs.unsupported:
        rows[-1]["error"] = "fvcore skipped ops: " + ", ".join(sorted(macs.unsupported))
    rows.append(_cell_row("image_size", h, "px"))
    rows += _peak_memory_rows(lambda: model(x), device, prof["warmup"], prof["iters"])
    if prof["latency"]:
        with torch.no_grad():
            stats = measure_latency(lambda: model(x), device=device, warmup=prof["warmup"], iters=prof["iters"])
        for stat in ("median", "iqr", "q1", "q3"):
            rows.append(_cell_row("latency_forward", getattr(stats, f"{stat}_ms"), "ms", stat))
        rows.append(_cell_row("latency_forward", stats.n, "count", "n"))
    return rows


def operator_params(model: torch.nn.Module) -> int:
    """Parameters of everything that exists only because of the operator (its instances and the
    plain model's image stem of a guided operator; see ``SegmentationModel.operator_modules``)."""
    from upbench.profiling import count_params
    from upbench.upsampler import Upsampler

    modules = model.operator_modules() if hasattr(model, "operator_modules") else None
    if modules is None:
        modules = [m for m in model.modules() if isinstance(m, Upsampler)]
    return sum(count_params(m)["total"] for m in modules)


def _peak_memory_rows(fn: Any, device: str, warmup: int, iters: int) -> list[dict[str, Any]]:
    """Peak memory of ``fn`` over ``iters`` calls after ``warmup`` untimed ones: median, IQR, q1, q3, n."""
    import numpy as np

    from upbench.profiling import measure_peak_memory

    with torch.no_grad():
        for _ in range(warmup):
            fn()
        peaks = [measure_peak_memory(fn, device=device) for _ in range(max(1, iters))]
    mib = np.array([p / 2**20 for p in peaks if p is not None])
    if mib.size == 0:
        return []
    q1, median, q3 = np.percentile(mib, [25, 50, 75])
    rows = [_cell_row("peak_memory", float(median), "MiB", "median")]
    rows += [_cell_row("peak_memory", float(v), "MiB", stat) for stat, v in (("iqr", q3 - q1), ("q1", q1), ("q3", q3))]
    return rows + [_cell_row("peak_memory", int(mib.size), "count", "n")]


def _write_per_image(cell_dir: Path, frame: Any) -> None:
    """``cells/<id>/per_image.parquet``: the per-image counts behind every accuracy metric."""
    from upbench.metrics.per_image import FILE_NAME, write_per_image

    write_per_image(cell_dir / FILE_NAME, frame)


# --------------------------------------------------------------------------- the loop
def _status_of(exc: BaseException) -> str:
    oom = getattr(torch, "OutOfMemoryError", None)
    if (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower():
        return "oom"
    return "failed"


def run_cell(
    cell: Cell, run_dir: Path, suite: Suite, device: str, env: dict[str, Any], attempt: int, progress: bool = True
) -> str:
    """Run one cell and write its rows (its ``cell`` row last) atomically to ``cells/<id>/rows.jsonl``;
    returns its status. The driver merges that file into ``results.jsonl`` (:func:`results.merge_cell_rows`)."""
    from upbench.training.distributed import rank_and_world

    cell_dir = run_dir / "cells" / cell.cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()  # a process of a multi-process cell: rank 0 writes its files
    if rank == 0:
        (cell_dir / "config.json").write_text(json.dumps(cell.config, indent=2, sort_keys=True, default=str) + "\n")
    ident = _identity(run_dir, suite, cell, attempt, env)
    t0 = time.perf_counter()
    status, error = "ok", None
    try:
        rows = _run_ops_cell(cell, device) if cell.kind == "ops" else _run_train_cell(cell, cell_dir, device, progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded as a result row: the suite goes on
        if world > 1:  # the other processes may wait for this one: fail the process, the launcher stops them
            (cell_dir / f"error_rank{rank}.txt").write_text(traceback.format_exc())
            raise
        status, error = _status_of(exc), f"{type(exc).__name__}: {exc}".strip()
        (cell_dir / "error.txt").write_text(traceback.format_exc())
        rows = []
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    if status == "ok" and any(r.get("status") == "oom" for r in rows):
        status = "oom"
    if rank > 0:
        return status
    now = datetime.now(UTC).isoformat(timespec="seconds")
    cell_row = _cell_row(results.CELL_METRIC, time.perf_counter() - t0, "s", status=status, error=error)
    results.write_cell_rows(cell_dir, [{**ident, **r, "time": now} for r in [*rows, cell_row]])
    return status


def lost_cell_rows(task: Any, error: str) -> None:
    """Record a cell whose worker was lost (it wrote no rows): a ``failed`` cell row, retried next run."""
    cell_dir = Path(task.run_dir) / "cells" / task.cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / "error.txt").write_text(error + "\n")
    ident = _identity(Path(task.run_dir), task.suite, task.cell, task.attempt, task.env)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    row = _cell_row(results.CELL_METRIC, None, "s", status="failed", error=error)
    results.write_cell_rows(cell_dir, [{**ident, **row, "time": now}])


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
) -> RunSummary:
    """Run every unfinished cell of ``suite`` into ``out_dir`` (default ``runs/<suite name>``).

    ``executor`` (``local``, ``ray``, ``slurm``; default: the suite's ``[executor]`` table, else
    ``local``) and ``executor_options`` (its keys, over the table) choose where cells run; see
    :mod:`upbench.executors`. One runner per folder: a second one raises ``RunLockedError``.
    ``command`` (the command line that started the run, when there is one) is recorded in
    ``environment.json`` and shown in the report; a resumed run keeps the first command.
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
    if dry_run:
        return _dry_run(suite, run_dir, device, ex)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        return _run_locked(suite, run_dir, device, progress, ex, command)


def _todo(suite: Suite, run_dir: Path, device: str) -> tuple[list[Cell], list[Cell], dict[str, int]]:
    """``(all cells, cells to run, attempts so far)`` after merging rows a killed run left unmerged."""
    everything = suite.all_cells(device=device)
    cells = [c for c in everything if c.matches(suite.only)]
    if (run_dir / results.RESULTS_FILE).exists() or (run_dir / "cells").is_dir():
        results.merge_cell_rows(run_dir, [c.cell_id for c in everything])
    done = results.finished_cells(run_dir)
    return everything, [c for c in cells if done.get(c.cell_id) != "ok"], results.attempts(run_dir)


def _dry_run(suite: Suite, run_dir: Path, device: str, ex: Any) -> RunSummary:
    from upbench.executors import CellTask

    cells = [c for c in suite.all_cells(device=device) if c.matches(suite.only)]
    done = results.finished_cells(run_dir) if run_dir.is_dir() else {}
    todo = [c for c in cells if done.get(c.cell_id) != "ok"]
    print(ex.describe([CellTask(c, suite, run_dir, device) for c in todo]))
    return RunSummary(suite.name, run_dir, total=len(cells), already_done=len(cells) - len(todo))


def _run_locked(
    suite: Suite, run_dir: Path, device: str, progress: bool, ex: Any, command: str | None = None
) -> RunSummary:
    from tqdm.auto import tqdm

    from upbench.executors import CellTask
    from upbench.suite import PROTOCOL_VERSION

    (run_dir / "suite.toml").write_text(dump_toml(suite.data))
    env = {**_environment(device), "executor": ex.name}
    command = results.read_environment(run_dir).get("command") or command  # the first one, kept on resume
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
            lost_cell_rows(task, outcome.lost)
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
