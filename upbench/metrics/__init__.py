"""Segmentation metrics: mIoU, aAcc, mAcc, boundary F1 (BF) and Boundary IoU, and any registered one.

Public API: :func:`evaluate` (one shot) and :class:`SegmentationMetrics` (streaming:
``update`` / ``compute`` / ``reset``, ``state_tensors`` for merging over ranks). Each metric is
one module with a :class:`Metric` subclass that declares its state and merge rule, registered
with :func:`register_metric` (:mod:`upbench.metrics.base`, :mod:`upbench.metrics.registry`);
built-ins: ``region`` (mIoU, aAcc, mAcc), ``boundary_f1`` (BF), ``boundary_iou`` (BIoU). Both take integer
label maps, ``(H, W)`` or ``(N, H, W)`` tensors or numpy arrays, or lists of such with different
sizes, on any device; metrics are computed at the resolution of each target.

Returned dict (all scores are fractions in [0, 1]):

``mIoU``, ``IoU`` (list per class)
    mmseg semantics: one confusion matrix over the whole dataset; ``IoU_c = I_c / U_c``; a class
    absent from both targets and predictions has IoU NaN and is left out of ``mIoU`` (nanmean).
    Equals ``torchmetrics.classification.MulticlassJaccardIndex(average="macro",
    ignore_index=...)``, which gives such classes weight 0 (not ``torchmetrics.segmentation.MeanIoU``,
    which averages per image).
``aAcc``, ``mAcc``, ``Acc`` (list)
    pixel accuracy; per-class accuracy ``I_c / |target == c|`` (NaN if the class is not in the
    targets) and its nanmean.
``BF``, ``BF_precision``, ``BF_recall``, ``BF_class`` (list)
    Csurka et al. 2013, variant pinned in :mod:`upbench.metrics.bfscore`: F1 per class per image
    with tolerance 0.75 % of the diagonal (``bf_tolerance``) but never less than 1 px, or
    ``bf_tolerance_px`` pixels; ``BF_tolerance_px`` is the tolerance used (mean over images);
    per-image BF = mean over the classes present in the image's target or prediction; ``BF`` =
    mean over images (likewise P and R). ``BF_class[c]`` = mean F1 over the images where c is
    present.
``BIoU``, ``BIoU_class``; ``BIoU_3px``, ``BIoU_3px_class``
    Cheng et al. 2021 (:mod:`upbench.metrics.biou`): per-class inner bands of width
    ``max(1, round(0.02 * diagonal))`` (``biou_dilation_ratio``) or a fixed 3 px
    (``biou_fixed_px``; the key is ``BIoU_<n>px``), band intersections and unions summed over
    the dataset, nanmean over classes with a non-empty union.

Edge cases (no NaN surprises): ignored pixels are removed from both maps (the prediction there
never matters) and are neutral for boundaries: they create no contour or band. A per-class entry
is NaN exactly when the dataset does not define it (the class never occurs, or never has a
band); a summary is NaN only when no class or image defines it, e.g. when every pixel is ignored.
An all-ignore image adds nothing. A single-class image predicted right scores 1 everywhere (its
band is the image-border ring; it has no contour, which counts as P = R = 1). ``boundary=False``
skips BF and BIoU, which are then NaN. ``SegmentationMetrics(..., per_image=True)`` also keeps
the per-image counts (:mod:`upbench.metrics.per_image`), from which every score can be
recomputed on any subset of the images. Per-class lists use float NaN; writers of JSON should
map NaN to null.
"""

from __future__ import annotations

from upbench.metrics.base import Metric, Score
from upbench.metrics.evaluate import evaluate
from upbench.metrics.options import MetricOptions
from upbench.metrics.registry import (
    create_metrics,
    headline_metrics,
    headline_scores,
    higher_is_better,
    metric_classes,
    register_metric,
    summary_metrics,
    unregister_metric,
)
from upbench.metrics.rows import metric_rows
from upbench.metrics.streaming import SegmentationMetrics

__all__ = [
    "Metric",
    "MetricOptions",
    "Score",
    "SegmentationMetrics",
    "create_metrics",
    "evaluate",
    "headline_metrics",
    "headline_scores",
    "higher_is_better",
    "metric_classes",
    "metric_rows",
    "register_metric",
    "summary_metrics",
    "unregister_metric",
]
