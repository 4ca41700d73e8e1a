"""Confusion matrix, per-image class counts and the NaN-safe ratio and mean of the metrics (mmseg semantics)."""

from __future__ import annotations

import torch
from torch import Tensor

from upbench.metrics.inputs import IGNORED


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Counts ``[target class, predicted class]`` over the labelled pixels of canonical maps."""
    valid = target != IGNORED
    codes = torch.where(valid, target * num_classes + pred, num_classes * num_classes)
    counts = torch.bincount(codes.flatten(), minlength=num_classes * num_classes + 1)
    return counts[:-1].view(num_classes, num_classes)


def class_counts_per_image(labels: Tensor, mask: Tensor, num_classes: int) -> Tensor:
    """``(N, K)`` int64: pixels of each class inside ``mask`` in each image of ``labels[N, H, W]``."""
    n = labels.shape[0]
    image = torch.arange(n, device=labels.device).view(n, 1, 1)
    codes = torch.where(mask, image * num_classes + labels, n * num_classes).flatten()
    return torch.bincount(codes, minlength=n * num_classes + 1)[:-1].view(n, num_classes)


def per_image_presence(labels: Tensor, num_classes: int) -> Tensor:
    """Bool ``(N, K)``: whether image ``n`` has a labelled pixel of class ``k`` in ``labels``."""
    return class_counts_per_image(labels, labels != IGNORED, num_classes) > 0


def region_counts_per_image(pred: Tensor, target: Tensor, num_classes: int) -> dict[str, Tensor]:
    """Per image and class ``(N, K)`` over labelled pixels: ``area_inter`` (the confusion diagonal),
    ``area_target`` (its row sums) and ``area_pred`` (its column sums)."""
    labelled = target != IGNORED
    return {
        "area_inter": class_counts_per_image(target, labelled & (pred == target), num_classes),
        "area_target": class_counts_per_image(target, labelled, num_classes),
        "area_pred": class_counts_per_image(pred, labelled, num_classes),
    }


def safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` in float64 with NaN where ``den == 0`` (an undefined ratio, never a warning)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


def nanmean(values: Tensor) -> float:
    """Mean of the non-NaN entries, NaN if there are none (like ``np.nanmean``, without warning)."""
    finite = values[~values.isnan()]
    return float(finite.mean()) if finite.numel() else float("nan")
