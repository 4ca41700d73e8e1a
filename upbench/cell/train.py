"""A ``train`` cell: build the model, train it, evaluate it with every metric, profile it.

Covers the ``hierarchical``, ``plain`` and ``probe`` architectures alike. Files written (rank 0 of
a multi-process cell): ``model.pt``, ``per_image.parquet``, ``train_log.csv``, ``pretrained.txt``
(with ``model.pretrained``), and the trainer's ``checkpoints/`` (from which a restarted cell resumes).

Profiling comes last and may fail on its own (out of memory at the profiling size, a MAC counter
that trips on an operator): the accuracy is then already measured and saved, so it is kept. The
rows before profiling go to ``profile_pending.json`` first; a profile that fails becomes one
``profile`` row with its status (``oom``/``failed``) and error beside them, and makes the cell
``failed``/``oom`` (so the next run takes it up again) while the report shows its accuracy. The
next run of a cell whose profile is pending loads ``model.pt`` and profiles it, nothing more
(single-process cells; a multi-process cell runs again, resuming from its final checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from upbench.cell.model import build_cell_model
from upbench.cell.profile import PROFILE_METRIC, guarded_profile
from upbench.results import move_aside, row, row_problem

#: The measurement rows of a cell whose profile is still owed (see the module docstring).
PENDING_FILE = "profile_pending.json"
MODEL_FILE = "model.pt"


def run_train_cell(config: dict[str, Any], cell_dir: Path, device: str, progress: bool) -> list[dict[str, Any]]:
    """The rows of a train cell: every metric, training diagnostics and (``profile.enabled``) cost;
    ``[]`` on ranks other than 0 of a multi-process cell."""
    from upbench.data import build_dataset, dataset_info
    from upbench.metrics import metric_rows
    from upbench.training import TrainConfig, diagnostics, evaluate, train
    from upbench.training.checkpoint import save_atomic
    from upbench.training.distributed import rank_and_world
    from upbench.training.train_log import FILE_NAME as TRAIN_LOG
    from upbench.training.train_log import write_train_log

    c = config
    rank, world = rank_and_world()
    main = rank == 0  # in a multi-process cell, rank 0 writes files and profiles
    ds = c["dataset"]
    root = ds["root"] or None
    info = dataset_info(ds["name"])
    val_set = build_dataset(ds["name"], split="val", root=root, **ds["val"])
    kept = _pending_rows(cell_dir) if c["profile"]["enabled"] and world == 1 else None
    if kept is not None:
        again = _profile_saved_model(c, cell_dir, device, val_set, info.num_classes)
        if again is not None:
            return kept + again
    train_set = build_dataset(ds["name"], split="train", root=root, **ds["train"])

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
        owner=checkpoint_owner(c, cell_dir),
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
    save_atomic(model.state_dict(), cell_dir / MODEL_FILE)
    _write_per_image(cell_dir, per_image)
    write_train_log(cell_dir / TRAIN_LOG, result.loss_history, result.lr_history)

    rows = metric_rows(scores, info.num_classes, **c.get("metrics", {}))
    rows.append(row("train_time", result.wall_time_s, "s"))  # the trainer's, summed over resumed sessions
    final_loss = getattr(result, "final_loss", None)
    if final_loss is not None:
        rows.append(row("final_loss", float(final_loss), "loss"))
    change = diagnostics.relative_weight_change(initial, model.upsamplers())
    if change is not None:
        rows.append(row("operator_weight_change", change, "fraction"))
    trend = diagnostics.loss_trend(result.loss_history)
    if trend is not None:
        rows.append(row("loss_trend_last10", trend, "fraction"))
    if c["profile"]["enabled"]:
        _write_pending(cell_dir, rows)
        rows += _profile(model, c, val_set, device, cell_dir)
    return rows


def checkpoint_owner(config: dict[str, Any], cell_dir: Path) -> dict[str, str]:
    """What each checkpoint of the cell records and must match to be resumed: the cell's folder name
    (its id) and the SHA-1 of its whole configuration (the id is its first 12 hex digits), so a
    ``last.pt`` copied in from another cell or run is never continued."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return {"cell_id": Path(cell_dir).name, "config_sha1": hashlib.sha1(text.encode()).hexdigest()}


def _profile(model: torch.nn.Module, c: dict[str, Any], val_set: Any, device: str, cell_dir: Path) -> list[dict]:
    """The cost rows, or one failed ``profile`` row (the pending rows then stay for the next run)."""
    rows = guarded_profile(model, c, val_set, device)
    if not any(r["metric"] == PROFILE_METRIC for r in rows):
        (cell_dir / PENDING_FILE).unlink(missing_ok=True)
    return rows


def _write_pending(cell_dir: Path, rows: list[dict[str, Any]]) -> None:
    """``profile_pending.json``, atomically: it is read back only whole."""
    path = cell_dir / PENDING_FILE
    tmp = path.with_name(f".{PENDING_FILE}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(rows, default=lambda v: v.item() if hasattr(v, "item") else str(v)) + "\n")
    os.replace(tmp, path)


def _pending_rows(cell_dir: Path) -> list[dict[str, Any]] | None:
    """The rows saved before a profile that did not finish, when ``model.pt`` and the per-image
    records they came with are there too; else None (the cell runs whole). A broken pending file
    is moved aside."""
    from upbench.metrics.per_image import FILE_NAME

    path = cell_dir / PENDING_FILE
    if not (path.is_file() and (cell_dir / MODEL_FILE).is_file() and (cell_dir / FILE_NAME).is_file()):
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        problem = "" if isinstance(rows, list) and rows else "no rows"
        problem = problem or next((p for r in rows if (p := row_problem({**r, "cell_id": "-", "attempt": 1}))), "")
    except (OSError, ValueError, TypeError) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem:
        move_aside(path, f"not the rows of a finished evaluation ({problem})", "the cell runs whole")
        return None
    return rows


def _profile_saved_model(
    c: dict[str, Any], cell_dir: Path, device: str, val_set: Any, num_classes: int
) -> list[dict[str, Any]] | None:
    """Profile the cell's saved ``model.pt`` (no training, no evaluation): its cost rows (or a
    failed ``profile`` row again); None when ``model.pt`` does not load into the cell's model
    (it is then moved aside and the cell runs whole)."""
    model = build_cell_model(c, num_classes)
    try:
        model.load_state_dict(torch.load(cell_dir / MODEL_FILE, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - any unreadable or foreign file: the cell runs whole
        move_aside(cell_dir / MODEL_FILE, f"does not load ({type(err).__name__}: {err})", "the cell runs whole")
        return None
    return _profile(model.to(device), c, val_set, device, cell_dir)


def _write_per_image(cell_dir: Path, frame: Any) -> None:
    """``cells/<id>/per_image.parquet``: the per-image counts behind every accuracy metric."""
    from upbench.metrics.per_image import FILE_NAME, write_per_image

    write_per_image(cell_dir / FILE_NAME, frame)
