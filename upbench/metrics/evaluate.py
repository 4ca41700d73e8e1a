"""One-shot evaluation of a whole set of label maps."""

from __future__ import annotations

from typing import Any

from upbench.metrics.streaming import SegmentationMetrics


def evaluate(preds: Any, targets: Any, num_classes: int, ignore_index: int | None = 255, **options: Any) -> dict:
    """All metrics over a dataset of label maps, at each target's own resolution.

    Args:
        preds: predicted class indices, ``(H, W)`` or ``(N, H, W)`` integer tensors or numpy arrays,
            or a list of such (sizes may differ between items).
        targets: ground-truth labels, same form and sizes as ``preds``.
        num_classes: number of classes ``K``.
        ignore_index: target label that never counts (``None``: none).
        **options: see :class:`~upbench.metrics.options.MetricOptions`.

    Returns:
        The dict described in :mod:`upbench.metrics`.

    Raises:
        InputShapeError: a shape, dtype, device or label value that does not fit.
        InvalidOptionError: an unknown or invalid option.
    """
    metrics = SegmentationMetrics(num_classes, ignore_index, **options)
    metrics.update(preds, targets)
    return metrics.compute()
