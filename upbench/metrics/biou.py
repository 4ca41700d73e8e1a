"""Boundary IoU (Cheng, Girshick, Dollar, Berg, Kirillov, CVPR 2021) for semantic label maps.

For each image and class ``c`` the *inner band* of the binary mask ``M_c`` is
``M_c minus erode(M_c, d)``, where the erosion uses a ``(2d+1) x (2d+1)`` square (the reference
``mask_to_boundary`` erodes ``d`` times with a 3x3 kernel, which is the same) and pixels outside
the image count as not in ``M_c`` (the image border is a boundary). Ignored pixels are neutral:
they count as inside every mask for the erosion and are never in a band.

Because the class masks of a label map partition the labelled pixels, a pixel of class ``c``
is in the band of ``c`` iff its ``(2d+1)`` window holds a labelled pixel of another class or
reaches outside the image. That is what :func:`inner_bands` computes for all classes at once,
with a sliding max and min of the labels. It equals the per-class binary erosion exactly (the
tests check this against ``scipy.ndimage``); it is *not* detectron2's grey erosion of the label
values, which assigns band pixels to wrong classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from upbench.metrics.confusion import class_counts_per_image
from upbench.metrics.inputs import IGNORED
from upbench.metrics.morphology import window_max_2d


def _small_dtype(num_classes: int) -> torch.dtype:
    if num_classes + 1 <= 255:
        return torch.uint8
    return torch.int16 if num_classes + 1 <= 32767 else torch.int32


def inner_bands(labels: Tensor, num_classes: int, widths: Sequence[int]) -> list[Tensor]:
    """Bool masks of the pixels in the inner band of their own class, one per width.

    Args:
        labels: canonical label maps ``Tensor[..., H, W]`` (int64, ``-1`` for ignored pixels).
        num_classes: number of classes ``K``.
        widths: band widths ``d`` in pixels (each >= 1).
    """
    dtype = _small_dtype(num_classes)
    # hi = c + 1 and lo = K - c on labelled pixels, 0 (neutral for max) on ignored ones. A window
    # max above hi (lo) means a larger (smaller) class nearby; the padding K + 1 beats every
    # label, so the image border counts as a boundary.
    hi = (labels - IGNORED).to(dtype)  # IGNORED is -1: ignored pixels get 0
    lo = (num_classes - labels).to(dtype).masked_fill_(hi == 0, 0)
    both = torch.stack([hi, lo])
    return [((window_max_2d(both, d, num_classes + 1) > both).any(0)).logical_and_(hi > 0) for d in widths]


def biou_counts(pred: Tensor, target: Tensor, num_classes: int, widths: Sequence[int]) -> list[tuple[Tensor, Tensor]]:
    """Per width: per-class band intersection and union ``(K,), (K,)`` summed over the images."""
    return [(inter.sum(0), union.sum(0)) for inter, union in biou_counts_per_image(pred, target, num_classes, widths)]


def biou_counts_per_image(
    pred: Tensor, target: Tensor, num_classes: int, widths: Sequence[int]
) -> list[tuple[Tensor, Tensor]]:
    """Per width: band intersection and union per image and class ``(N, K), (N, K)``."""
    stacked = torch.stack([target, pred])
    agree = target == pred
    out = []
    for band in inner_bands(stacked, num_classes, widths):
        band_t, band_p = band[0], band[1]
        count_t = class_counts_per_image(target, band_t, num_classes)
        count_p = class_counts_per_image(pred, band_p, num_classes)
        inter = class_counts_per_image(target, band_t & band_p & agree, num_classes)
        out.append((inter, count_t + count_p - inter))
    return out
