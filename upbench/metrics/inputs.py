"""Validation of label maps: shapes, dtypes, devices and label ranges.

Every metric works on *canonical* pairs: ``(pred, target)`` int64 tensors of shape ``(N, H, W)``
on one device, where pixels whose target is the ignore label hold ``-1`` in **both** maps. The
``-1`` sentinel is what makes ignore pixels invisible to every metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from upbench.errors import InputShapeError

IGNORED = -1  # canonical label of an ignored pixel in both maps


def canonical_pairs(
    preds: Any, targets: Any, num_classes: int, ignore_index: int | None
) -> list[tuple[Tensor, Tensor]]:
    """Turn user input into a list of canonical ``(pred, target)`` pairs.

    ``preds``/``targets`` are each an integer label map ``(H, W)`` or ``(N, H, W)`` (tensor or
    numpy array), or a list/tuple of such maps whose sizes may differ.
    """
    check_num_classes(num_classes)
    check_ignore_index(ignore_index)
    if isinstance(preds, list | tuple) != isinstance(targets, list | tuple):
        raise InputShapeError("preds and targets must both be lists or both be single label maps")
    if isinstance(preds, list | tuple):
        if len(preds) != len(targets):
            raise InputShapeError(f"got {len(preds)} prediction maps but {len(targets)} target maps")
        return [_pair(p, t, num_classes, ignore_index, i) for i, (p, t) in enumerate(zip(preds, targets))]
    return [_pair(preds, targets, num_classes, ignore_index, None)]


def check_num_classes(num_classes: Any) -> None:
    """Raise unless ``num_classes`` is an int >= 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise InputShapeError(f"num_classes must be an int >= 1, got {num_classes!r}")


def check_ignore_index(ignore_index: Any) -> None:
    """Raise unless ``ignore_index`` is an int or ``None``."""
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise InputShapeError(f"ignore_index must be an int or None, got {ignore_index!r}")


def _pair(
    pred: Any, target: Any, num_classes: int, ignore_index: int | None, item: int | None
) -> tuple[Tensor, Tensor]:
    where = "" if item is None else f" (item {item})"
    pred_is_numpy, target_is_numpy = isinstance(pred, np.ndarray), isinstance(target, np.ndarray)
    pred = _as_labels(pred, "preds" + where)
    target = _as_labels(target, "targets" + where)
    if pred_is_numpy != target_is_numpy:  # a numpy map joins the tensor's device
        pred, target = (pred.to(target.device), target) if pred_is_numpy else (pred, target.to(pred.device))
    if pred.shape != target.shape:
        raise InputShapeError(
            f"preds{where} have shape {tuple(pred.shape)} but targets {tuple(target.shape)}; metrics are "
            "computed at the label's resolution: resize the logits to the label size before argmax"
        )
    if pred.device != target.device:
        raise InputShapeError(f"preds{where} are on {pred.device} but targets on {target.device}")
    if pred.dim() == 2:
        pred, target = pred[None], target[None]
    pred, target = pred.long(), target.long()
    ignored = target == ignore_index if ignore_index is not None else torch.zeros_like(target, dtype=torch.bool)
    _check_range(target.masked_fill(ignored, 0), num_classes, f"targets{where}", ignore_index)
    _check_range(pred.masked_fill(ignored, 0), num_classes, f"preds{where} (at labelled pixels)", None)
    return pred.masked_fill(ignored, IGNORED), target.masked_fill(ignored, IGNORED)


def _as_labels(x: Any, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
            raise InputShapeError(f"{name} must be an integer label map, got numpy dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise InputShapeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex():
        raise InputShapeError(
            f"{name} must be an integer label map, got dtype {x.dtype} (take argmax over the class dim first)"
        )
    if x.dim() not in (2, 3):
        raise InputShapeError(f"{name} must have shape (H, W) or (N, H, W), got {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise InputShapeError(f"{name} has an empty spatial size {tuple(x.shape)}")
    return x


def _check_range(labels: Tensor, num_classes: int, name: str, ignore_index: int | None) -> None:
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        extra = f" or the ignore label {ignore_index}" if ignore_index is not None else ""
        raise InputShapeError(f"{name} contain label {bad}; expected values in [0, {num_classes}){extra}")
