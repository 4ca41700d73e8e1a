"""Boundary IoU (:mod:`upbench.metrics.biou`) at the diagonal-relative width and at a fixed width.

State: per class, the inner-band intersection and union of prediction and target, summed over
the dataset (``biou_inter``, ``biou_union`` at ``max(1, round(biou_dilation_ratio * diagonal))``
px; ``biou_fixed_inter``, ``biou_fixed_union`` at ``biou_fixed_px``). ``BIoU`` and
``BIoU_<n>px`` are the nanmeans over classes with a non-empty band union.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from upbench.metrics.base import Metric, Score
from upbench.metrics.biou import biou_counts_per_image
from upbench.metrics.confusion import nanmean, safe_ratio
from upbench.metrics.region import nanmean_rows
from upbench.metrics.registry import register_metric

PREFIXES = ("biou", "biou_fixed")


@register_metric("boundary_iou")
class BoundaryIoU(Metric):
    """``BIoU`` and ``BIoU_<n>px`` (and their ``_class`` lists) from dataset-level band counts."""

    order = 2
    needs_boundary = True

    def setup(self) -> None:
        fixed = f"BIoU_{self.options.biou_fixed_px}px"
        self.keys = ("BIoU", fixed)
        self.scores = (Score("BIoU", headline=True), Score(fixed))
        for prefix in PREFIXES:
            self.add_state(f"{prefix}_inter", per_class=True)
            self.add_state(f"{prefix}_union", per_class=True)

    def update(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        h, w = target.shape[-2:]
        widths = (self.options.biou_width(h, w), self.options.biou_fixed_px)
        out = {}
        for prefix, (inter, union) in zip(PREFIXES, biou_counts_per_image(pred, target, self.num_classes, widths)):
            out[f"{prefix}_inter"], out[f"{prefix}_union"] = inter, union
        return out

    def compute(self, state: dict[str, Tensor]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, prefix in zip(self.keys, PREFIXES):
            per_class = safe_ratio(state[f"{prefix}_inter"], state[f"{prefix}_union"])
            out[key] = nanmean(per_class)
            out[f"{key}_class"] = per_class.tolist()
        return out

    def summary(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {
            key: nanmean_rows(safe_ratio(state[f"{prefix}_inter"], state[f"{prefix}_union"]))
            for key, prefix in zip(self.keys, PREFIXES)
        }
