"""A ``train`` cell: build the model, train it, evaluate it with every metric, profile it.

Covers the ``hierarchical``, ``plain`` and ``probe`` architectures alike. Files written (rank 0 of
a multi-process cell): ``model.pt``, ``per_image.parquet``, ``train_log.csv``, ``pretrained.txt``
(with ``model.pretrained``), and the trainer's ``checkpoints/`` (from which a restarted cell resumes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from upbench.cell.model import build_cell_model
from upbench.cell.profile import profile_model
from upbench.results import row


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
        rows += profile_model(model, c, val_set, device)
    return rows


def _write_per_image(cell_dir: Path, frame: Any) -> None:
    """``cells/<id>/per_image.parquet``: the per-image counts behind every accuracy metric."""
    from upbench.metrics.per_image import FILE_NAME, write_per_image

    write_per_image(cell_dir / FILE_NAME, frame)
