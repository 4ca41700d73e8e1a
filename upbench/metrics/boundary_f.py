"""Boundary F1 (:mod:`upbench.metrics.bfscore`): ``BF``, its precision and recall, per class, and the tolerance.

Per-image record: per class, the contour counts of :func:`~upbench.metrics.bfscore.bf_counts`
(``bf_pred_total``, ``bf_pred_matched``, ``bf_target_total``, ``bf_target_matched``, ``bf_in_pred``,
``bf_in_target``) and the tolerance used on the image (``bf_tolerance_px``). BF is a mean of
per-image scores, so the state is derived from them (:meth:`BoundaryF1.state_of`): sums over images
of the per-image P, R and F1 (of images with a present class) and their count, per class the sum
of F1 over the images where the class is present and their count, and the tolerances' sum.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from upbench.metrics.base import Metric, Score
from upbench.metrics.bfscore import bf_counts, bf_image_scores, bf_scores
from upbench.metrics.confusion import safe_ratio
from upbench.metrics.registry import register_metric

COUNTS = ("pred_total", "pred_matched", "target_total", "target_matched", "in_pred", "in_target")


@register_metric("boundary_f1")
class BoundaryF1(Metric):
    """``BF`` and ``BF_tolerance_px`` (reported), ``BF_precision``, ``BF_recall`` and ``BF_class``."""

    order = 1
    needs_boundary = True
    scores = (Score("BF", headline=True), Score("BF_tolerance_px", unit="px", role="detail"))

    def setup(self) -> None:
        for name in COUNTS:
            self.add_record(f"bf_{name}", dtype=torch.bool if name.startswith("in_") else torch.int64)
        self.add_record("bf_tolerance_px", per_class=False, dtype=torch.float64)
        for name in ("bf_precision_sum", "bf_recall_sum", "bf_f1_sum", "bf_tolerance_sum"):
            self.add_state(name, dtype=torch.float64)
        self.add_state("bf_image_count")  # images with a class present in target or prediction
        self.add_state("bf_images")  # all images (for the mean tolerance)
        self.add_state("bf_class_f1_sum", per_class=True, dtype=torch.float64)
        self.add_state("bf_class_count", per_class=True)

    def update(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        n, (h, w) = target.shape[0], target.shape[-2:]
        radius = self.options.bf_radius(h, w)
        out = {f"bf_{name}": t for name, t in bf_counts(pred, target, self.num_classes, radius).items()}
        out["bf_tolerance_px"] = torch.full((n,), radius, dtype=torch.float64)
        return out

    def state_of(self, records: dict[str, Tensor]) -> dict[str, Tensor]:
        precision, recall, f1, present = bf_scores({name: records[f"bf_{name}"] for name in COUNTS})
        per_image, has_class = bf_image_scores(precision, recall, f1, present)  # (3, N), (N,)
        per_image = per_image * has_class
        return {
            "bf_precision_sum": per_image[0],
            "bf_recall_sum": per_image[1],
            "bf_f1_sum": per_image[2],
            "bf_tolerance_sum": records["bf_tolerance_px"].double(),
            "bf_image_count": has_class.long(),
            "bf_images": torch.ones_like(has_class, dtype=torch.int64),
            "bf_class_f1_sum": f1 * present,
            "bf_class_count": present.long(),
        }

    def compute(self, state: dict[str, Tensor]) -> dict[str, Any]:
        count = state["bf_image_count"]
        return {
            "BF": float(safe_ratio(state["bf_f1_sum"], count)),
            "BF_precision": float(safe_ratio(state["bf_precision_sum"], count)),
            "BF_recall": float(safe_ratio(state["bf_recall_sum"], count)),
            "BF_class": safe_ratio(state["bf_class_f1_sum"], state["bf_class_count"]).tolist(),
            "BF_tolerance_px": float(safe_ratio(state["bf_tolerance_sum"], state["bf_images"])),
        }

    def summary(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"BF": safe_ratio(state["bf_f1_sum"], state["bf_image_count"])}
