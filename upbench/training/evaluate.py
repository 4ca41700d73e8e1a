"""Evaluation of a segmentation model on a dataset with the streaming metrics."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from upbench.training.distributed import all_reduce_, rank_and_world
from upbench.training.inference import predict_logits
from upbench.training.loop import unwrap


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    ignore_index: int = 255,
    mode: Literal["whole", "slide"] = "whole",
    crop_size: int | tuple[int, int] = 512,
    stride: int | tuple[int, int] = 341,
    *,
    amp: bool = False,
    per_image: bool = False,
    **metric_options: Any,
) -> dict[str, Any]:
    """Scores of ``model`` on ``dataset`` (``(image, label)`` pairs, one image at a time).

    Logits are resized (bilinear) to the label's resolution before the argmax, so predictions
    are scored at the label's original size. Inside a process group each rank scores every
    ``world``-th image and the metric states are merged over ranks by their declared rules; every
    rank returns the same dict. ``metric_options`` go to :class:`upbench.metrics.SegmentationMetrics`. ``amp`` uses
    float16 autocast on CUDA (ignored on CPU). The model's train/eval mode is restored after.
    ``per_image`` adds ``"per_image"``: the per-image counts as the long table of
    :mod:`upbench.metrics.per_image` (gathered from every rank), ``image`` = dataset index.
    """
    from upbench.metrics import SegmentationMetrics

    core = unwrap(model)
    device = next(core.parameters()).device
    rank, world = rank_and_world()
    metrics = SegmentationMetrics(num_classes, ignore_index, device=device, per_image=per_image, **metric_options)
    was_training = core.training
    core.eval()
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp and device.type == "cuda" else None
    try:
        for i in range(rank, len(dataset), world):
            image, label = dataset[i]
            label = torch.as_tensor(label)
            with autocast or contextlib.nullcontext():
                logits = predict_logits(
                    core,
                    image[None].to(device),
                    mode=mode,
                    crop_size=crop_size,
                    stride=stride,
                    size=tuple(label.shape[-2:]),
                )
            metrics.update(logits.argmax(1)[0], label.to(device))
    finally:
        core.train(was_training)
    if world > 1:
        reductions = metrics.reductions()
        for name, t in metrics.state_tensors().items():
            all_reduce_(t, reductions[name])
    out = metrics.compute()
    if per_image:
        out["per_image"] = _gather_per_image(metrics, list(range(rank, len(dataset), world)), world)
    return out


def _gather_per_image(metrics: Any, index: list[int], world: int) -> Any:
    """The long per-image table of this rank's images, concatenated over ranks."""
    import pandas as pd

    from upbench.metrics.per_image import counts_to_frame

    frame = counts_to_frame(metrics.per_image_counts(), index)
    if world > 1:
        frames: list[Any] = [None] * world
        torch.distributed.all_gather_object(frames, frame)
        frame = pd.concat(frames).sort_values(["image", "class"], kind="mergesort").reset_index(drop=True)
    return frame
