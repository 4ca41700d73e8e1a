"""Composable transforms on ``(image, label)`` pairs (mmseg's training pipeline in torch).

Every transform is called as ``t(image, label, generator)`` and returns ``(image, label)``:
``image`` a float tensor ``[3, H, W]`` (raw RGB values in [0, 255] until :class:`Normalize`),
``label`` a long tensor ``[H, W]``. Random transforms draw only from ``generator`` (a
``torch.Generator``; ``None`` uses torch's global generator), so a seeded generator makes a
pipeline deterministic. Geometric transforms move image and label together: images are
resampled bilinearly, labels by nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from upbench.data._color import hsv_to_rgb, rgb_to_hsv

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

Pair = tuple[Tensor, Tensor]


class Transform(Protocol):
    """A callable ``(image, label, generator) -> (image, label)``."""

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair: ...


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _randint(n: int, generator: torch.Generator | None) -> int:
    """A uniform integer in ``[0, n)``."""
    return int(torch.randint(n, (), generator=generator))


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` after an aspect-preserving resize that fits ``scale = (long edge, short edge)``.

    The factor is ``min(long / max(H, W), short / min(H, W))`` (mmcv's ``rescale_size``).
    """
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``[3, H, W]`` to ``size`` (no antialiasing, like OpenCV)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def resize_label(label: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``[H, W]`` to ``size``."""
    if tuple(label.shape) == tuple(size):
        return label
    return F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()


class Compose:
    """Apply ``transforms`` in order, passing the same generator to each."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair:
        for t in self.transforms:
            image, label = t(image, label, generator)
        return image, label

    def __repr__(self) -> str:
        return f"Compose({', '.join(type(t).__name__ for t in self.transforms)})"


class Resize:
    """Aspect-preserving resize to fit ``scale = (long, short)``; ``resize_label=False`` keeps the label.

    With ``size_divisor`` > 1 the resized image is resized again to the next multiples of it
    (``AlignedResize`` of the original SegFormer code, used by FADE/SAPA: two bilinear resizes).
    """

    def __init__(self, scale: tuple[int, int], *, resize_label: bool = True, size_divisor: int = 1) -> None:
        self.scale = scale
        self.resize_label = resize_label
        self.size_divisor = size_divisor

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair:
        size = rescale_size(image.shape[-2], image.shape[-1], self.scale)
        image = resize_image(image, size)
        if self.size_divisor > 1:
            d = self.size_divisor
            size = (-(-size[0] // d) * d, -(-size[1] // d) * d)
            image = resize_image(image, size)
        return image, resize_label(label, size) if self.resize_label else label


class RandomResize:
    """Resize to fit ``scale * r`` with ``r`` uniform in ``ratio_range`` (mmseg ``RandomResize``)."""

    def __init__(self, scale: tuple[int, int], ratio_range: tuple[float, float] = (0.5, 2.0)) -> None:
        self.scale = scale
        self.ratio_range = ratio_range

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair:
        r = _uniform(*self.ratio_range, generator)
        target = (int(self.scale[0] * r), int(self.scale[1] * r))
        size = rescale_size(image.shape[-2], image.shape[-1], target)
        return resize_image(image, size), resize_label(label, size)


class RandomCrop:
    """Crop ``size = (h, w)`` at a uniform offset (smaller inputs are kept whole; pad later).

    With ``cat_max_ratio < 1`` up to 10 crops are drawn until one where no single class covers
    ``cat_max_ratio`` or more of the non-ignored pixels (and at least two classes are present);
    otherwise the last one is kept (mmseg ``RandomCrop``).
    """

    def __init__(self, size: tuple[int, int], cat_max_ratio: float = 1.0, ignore_index: int = 255) -> None:
        self.size = size
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _box(self, height: int, width: int, generator: torch.Generator | None) -> tuple[int, int]:
        top = _randint(max(height - self.size[0], 0) + 1, generator)
        left = _randint(max(width - self.size[1], 0) + 1, generator)
        return top, left

    def _balanced(self, label: Tensor) -> bool:
        counts = torch.bincount(label[label != self.ignore_index].flatten())
        counts = counts[counts > 0]
        return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair:
        h, w = self.size
        top, left = self._box(label.shape[0], label.shape[1], generator)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                if self._balanced(label[top : top + h, left : left + w]):
                    break
                top, left = self._box(label.shape[0], label.shape[1], generator)
        return image[:, top : top + h, left : left + w], label[top : top + h, left : left + w]


class RandomFlip:
    """Horizontal flip with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair:
        if _uniform(0.0, 1.0, generator) < self.prob:
            return image.flip(-1), label.flip(-1)
        return image, label


class PhotoMetricDistortion:
    """mmseg's ``PhotoMetricDistortion`` on raw RGB in [0, 255]; the label is untouched.

    Each step has probability 0.5: brightness ``+ U(-delta, delta)``; contrast ``* U(range)``
    (before or after the HSV steps, chosen at random); saturation ``* U(range)``; hue
    ``+ U(-hue_delta, hue_delta)`` in OpenCV units (180 = a full turn). Values are clipped to
    [0, 255] after each step.
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 18,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    def _contrast(self, image: Tensor, generator: torch.Generator | None) -> Tensor:
        if _randint(2, generator):
            image = (image * _uniform(*self.contrast_range, generator)).clamp(0, 255)
        return image

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair:
        if _randint(2, generator):
            image = (image + _uniform(-self.brightness_delta, self.brightness_delta, generator)).clamp(0, 255)
        contrast_first = _randint(2, generator) == 1
        if contrast_first:
            image = self._contrast(image, generator)
        if _randint(2, generator):
            hsv = rgb_to_hsv(image / 255)
            hsv[1] = (hsv[1] * _uniform(*self.saturation_range, generator)).clamp(0, 1)
            image = hsv_to_rgb(hsv) * 255
        if _randint(2, generator):
            hsv = rgb_to_hsv(image / 255)
            hsv[0] = (hsv[0] + _uniform(-self.hue_delta, self.hue_delta, generator) / 180) % 1.0
            image = hsv_to_rgb(hsv) * 255
        if not contrast_first:
            image = self._contrast(image, generator)
        return image, label


class Normalize:
    """``(image - mean) / std`` per channel (default: ImageNet statistics on the [0, 255] scale)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair:
        return (image - self.mean) / self.std, label


class Pad:
    """Pad bottom and right to at least ``size = (h, w)`` (image ``value``, label ``label_value``)."""

    def __init__(self, size: tuple[int, int], value: float = 0.0, label_value: int = 255) -> None:
        self.size = size
        self.value = value
        self.label_value = label_value

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator | None = None) -> Pair:
        dh, dw = max(self.size[0] - label.shape[0], 0), max(self.size[1] - label.shape[1], 0)
        if dh == 0 and dw == 0:
            return image, label
        pad = (0, dw, 0, dh)
        return F.pad(image, pad, value=self.value), F.pad(label, pad, value=self.label_value)
