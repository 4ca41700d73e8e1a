"""What a dataset's labels allow without any learning: the resolution ceilings, the guided oracle,
the pixel-colour rule and how visible the boundaries are.

All functions take raw samples (image float ``[3, H, W]`` in [0, 255], label long ``[H, W]`` with
``ignore_index`` for unlabelled pixels) and return predicted label maps or plain numbers; scores
are computed by :func:`miou` with upbench's metric semantics (one confusion matrix over the set,
classes absent from targets and predictions left out).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from upbench.metrics.confusion import confusion_matrix, nanmean, safe_ratio
from upbench.metrics.inputs import IGNORED


def miou(preds: Iterable[Tensor], targets: Iterable[Tensor], num_classes: int, ignore_index: int) -> dict:
    """``{"mIoU": float, "IoU": [per class]}`` of label maps against targets (fractions, NaN-safe)."""
    total = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for pred, target in zip(preds, targets):
        target = torch.where(target == ignore_index, IGNORED, target)
        total += confusion_matrix(pred.long(), target.long(), num_classes)
    # the region metric's rule (upbench.metrics.region): a class absent from both maps has IoU NaN
    # and is left out of the mean
    conf = total.double()
    inter = conf.diagonal()
    iou = safe_ratio(inter, conf.sum(1) + conf.sum(0) - inter)
    return {"mIoU": nanmean(iou), "IoU": iou.tolist()}


def class_shares(label: Tensor, num_classes: int, ratio: int, ignore_index: int) -> Tensor:
    """``[K, ceil(H / r), ceil(W / r)]``: the share of each class among the labelled pixels of each
    ``r x r`` cell (all zeros where a cell has none), what a perfect stride-``r`` prediction holds."""
    h, w = label.shape
    valid = label != ignore_index
    onehot = F.one_hot(torch.where(valid, label, 0).long(), num_classes).permute(2, 0, 1).double()
    onehot = onehot * valid
    ph, pw = -h % ratio, -w % ratio
    sums = F.avg_pool2d(F.pad(onehot, (0, pw, 0, ph))[None], ratio, divisor_override=1)[0]
    count = sums.sum(0, keepdim=True)
    return torch.where(count > 0, sums / count.clamp_min(1), torch.zeros_like(sums))


def upsample_shares(shares: Tensor, ratio: int, size: tuple[int, int]) -> Tensor:
    """Nearest upsampling of cell shares back to the ``size`` of the label (each pixel: its cell)."""
    up = shares.repeat_interleave(ratio, 1).repeat_interleave(ratio, 2)
    return up[:, : size[0], : size[1]]


def nearest_ceiling(label: Tensor, num_classes: int, ratio: int, ignore_index: int) -> Tensor:
    """The label seen only on the stride-``ratio`` grid, upsampled nearest: each pixel takes its
    cell's majority class (ties: the lower class id)."""
    shares = class_shares(label, num_classes, ratio, ignore_index)
    return upsample_shares(shares, ratio, tuple(label.shape)).argmax(0)


def guided_oracle(
    label: Tensor, image: Tensor, num_classes: int, ratio: int, ignore_index: int, sigma_range: float = 0.1
) -> Tensor:
    """The same cell shares upsampled by a joint-bilateral filter guided by the full-resolution image.

    ``out(p) = sum_q w(p, q) S(q) / sum_q w(p, q)`` over the pixels ``q`` within ``ratio`` px of ``p``
    (every ``max(1, ratio // 8)``-th offset), with ``S`` the nearest-upsampled shares and
    ``w = exp(-|p - q|^2 / (2 (ratio / 2)^2)) * exp(-|I(p) - I(q)|^2 / (2 sigma_range^2))`` on the
    RGB image in [0, 1]: pixels that look like ``p`` vote with their cell's shares, so a boundary the
    image shows can be recovered inside a cell. Argmax of the result.
    """
    h, w = label.shape
    shares = upsample_shares(class_shares(label, num_classes, ratio, ignore_index), ratio, (h, w)).float()
    guide = (image.float() / 255).clamp(0, 1)
    radius, step = ratio, max(1, ratio // 8)
    sigma_space = ratio / 2
    pad = (radius, radius, radius, radius)
    guide_p = F.pad(guide[None], pad, mode="replicate")[0]
    shares_p = F.pad(shares[None], pad)[0]
    inside = F.pad(torch.ones(1, 1, h, w), pad)[0, 0]
    acc = torch.zeros(num_classes, h, w)
    norm = torch.zeros(h, w)
    for dy in range(-radius, radius + 1, step):
        for dx in range(-radius, radius + 1, step):
            rows, cols = slice(radius + dy, radius + dy + h), slice(radius + dx, radius + dx + w)
            colour = (guide_p[:, rows, cols] - guide).square().sum(0)
            weight = math.exp(-(dy * dy + dx * dx) / (2 * sigma_space**2)) * torch.exp(-colour / (2 * sigma_range**2))
            weight = weight * inside[rows, cols]
            acc += weight * shares_p[:, rows, cols]
            norm += weight
    return (acc / norm.clamp_min(1e-12)).argmax(0)


class ColourRule:
    """The best per-pixel rule of the RGB value: each colour bin (``bins`` levels per channel)
    takes the class most frequent among the training pixels of that colour; bins never seen
    take the most frequent class overall."""

    def __init__(self, num_classes: int, ignore_index: int, bins: int = 32) -> None:
        self.num_classes, self.ignore_index, self.bins = num_classes, ignore_index, bins
        self.counts = torch.zeros(bins**3, num_classes, dtype=torch.long)

    def _codes(self, image: Tensor) -> Tensor:
        q = (image.float().clamp(0, 255) * self.bins / 256).long().clamp(0, self.bins - 1)
        return (q[0] * self.bins + q[1]) * self.bins + q[2]

    def fit(self, image: Tensor, label: Tensor) -> None:
        valid = label != self.ignore_index
        codes = self._codes(image)[valid] * self.num_classes + label[valid]
        self.counts += torch.bincount(codes, minlength=self.counts.numel()).view_as(self.counts)

    def predict(self, image: Tensor) -> Tensor:
        table = self.counts.argmax(1)
        table[self.counts.sum(1) == 0] = int(self.counts.sum(0).argmax())
        return table[self._codes(image)]


def boundary_visibility(
    labels: Sequence[Tensor], images: Sequence[Tensor], ignore_index: int, threshold: float = 0.1
) -> float:
    """Share of the label-boundary pixels where the image shows an edge: an RGB step of at least
    ``threshold`` (in [0, 1]) between two 4-neighbours within 1 px of the pixel."""
    seen = total = 0
    for label, image in zip(labels, images):
        img = image.float() / 255
        valid = label != ignore_index
        edge_l = torch.zeros_like(label, dtype=torch.bool)
        edge_i = torch.zeros(label.shape)
        for dim in (0, 1):
            a = [slice(None), slice(None)]
            b = [slice(None), slice(None)]
            a[dim], b[dim] = slice(1, None), slice(None, -1)
            la, lb = label[tuple(a)], label[tuple(b)]
            step_l = (la != lb) & valid[tuple(a)] & valid[tuple(b)]
            step_i = (img[(slice(None), *a)] - img[(slice(None), *b)]).norm(dim=0)
            edge_l[tuple(a)] |= step_l
            edge_l[tuple(b)] |= step_l
            edge_i[tuple(a)] = torch.maximum(edge_i[tuple(a)], step_i)
            edge_i[tuple(b)] = torch.maximum(edge_i[tuple(b)], step_i)
        near = F.max_pool2d(edge_i[None, None], 3, 1, 1)[0, 0] >= threshold
        seen += int((edge_l & near).sum())
        total += int(edge_l.sum())
    return seen / total if total else float("nan")
