"""Region metrics (mmseg semantics): mIoU, aAcc, mAcc and per-class IoU and accuracy.

State: per class, the labelled pixels predicted right (``area_inter``, the confusion diagonal),
in the target (``area_target``, its row sums) and predicted (``area_pred``, its column sums),
summed over the dataset. ``IoU_c = I_c / U_c``; a class absent from both targets and predictions
has IoU NaN and is left out of ``mIoU`` (nanmean); accuracy is ``I_c / |target == c|``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from upbench.metrics.base import Metric, Score
from upbench.metrics.confusion import nanmean, region_counts_per_image, safe_ratio
from upbench.metrics.registry import register_metric


@register_metric("region")
class RegionMetrics(Metric):
    """mIoU, aAcc, mAcc (and ``IoU``, ``Acc`` per class) from dataset-level pixel counts."""

    order = 0
    scores = (
        Score("mIoU", headline=True),
        Score("aAcc"),
        Score("mAcc"),
        Score("IoU", role="per_class"),
    )

    def setup(self) -> None:
        for name in ("area_inter", "area_target", "area_pred"):
            self.add_state(name, per_class=True)

    def update(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        return region_counts_per_image(pred, target, self.num_classes)

    def compute(self, state: dict[str, Tensor]) -> dict[str, Any]:
        inter, label_area, pred_area = (state[k].double() for k in ("area_inter", "area_target", "area_pred"))
        iou = safe_ratio(inter, label_area + pred_area - inter)
        acc = safe_ratio(inter, label_area)
        return {
            "mIoU": nanmean(iou),
            "aAcc": float(safe_ratio(inter.sum(), label_area.sum())),
            "mAcc": nanmean(acc),
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
        }

    def summary(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        inter, label_area, pred_area = (state[k] for k in ("area_inter", "area_target", "area_pred"))
        return {
            "mIoU": nanmean_rows(safe_ratio(inter, label_area + pred_area - inter)),
            "aAcc": safe_ratio(inter.sum(-1), label_area.sum(-1)),
            "mAcc": nanmean_rows(safe_ratio(inter, label_area)),
        }


def nanmean_rows(values: Tensor) -> Tensor:
    """Mean over the last dim of the non-NaN entries, NaN for a row without any."""
    finite = ~values.isnan()
    total = torch.where(finite, values, 0.0).sum(-1)
    return safe_ratio(total, finite.sum(-1))
