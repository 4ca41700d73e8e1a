"""The standard training and validation pipelines, and parsing of size options.

Training (mmseg's ADE20K / Cityscapes recipe): :class:`RandomResize` to ``scale`` times a ratio in
``ratio_range``, :class:`RandomCrop` of ``crop_size`` (optionally with ``cat_max_ratio``),
:class:`RandomFlip`, :class:`PhotoMetricDistortion`, :class:`Normalize`, :class:`Pad` to
``crop_size`` (image 0 after normalisation, label 255). Every training sample has size
``crop_size``.

Validation: :class:`Normalize` only, so image and label keep the original resolution; with
``test_scale`` the *image* is resized to fit ``test_scale = (long, short)`` (aspect preserved)
and the label stays at its original resolution: predictions must then be resized to the label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from upbench.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    RandomResize,
    Resize,
)
from upbench.errors import ConfigError


def as_pair(value: Any, option: str, *, minimum: float = 1) -> tuple[Any, Any]:
    """``value`` (a number or a sequence of two) as a pair, checked ``>= minimum``."""
    pair = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value, value)
    ok = len(pair) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in pair)
    if not ok or min(pair) < minimum:
        raise ConfigError(f"option {option} = {value!r}: expected a number >= {minimum} or a pair of them")
    return pair


def as_count(value: Any, option: str = "count") -> int | None:
    """``value`` as a positive sample count (``None`` passes through)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"option {option} = {value!r}: expected a positive integer")
    return value


def train_pipeline(
    *,
    scale: tuple[int, int],
    crop_size: tuple[int, int],
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 1.0,
    flip_prob: float = 0.5,
    photometric: bool = True,
    ignore_index: int = 255,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """The augmenting training pipeline described in the module docstring."""
    steps = [
        RandomResize(scale, ratio_range),
        RandomCrop(crop_size, cat_max_ratio, ignore_index),
        RandomFlip(flip_prob),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [Normalize(mean, std), Pad(crop_size, 0.0, ignore_index)]
    return Compose(steps)


def val_pipeline(
    *,
    test_scale: tuple[int, int] | None = None,
    test_size_divisor: int = 1,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """Normalisation, and with ``test_scale`` an image-only aspect-preserving resize.

    ``test_size_divisor`` > 1 then aligns the resized image to its multiples (``AlignedResize``).
    """
    steps = [] if test_scale is None else [Resize(test_scale, resize_label=False, size_divisor=test_size_divisor)]
    return Compose([*steps, Normalize(mean, std)])


def as_statistics(value: Any, option: str) -> tuple[float, float, float]:
    """Per-channel (R, G, B) normalisation statistics on the [0, 255] scale."""
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3
    if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"option {option} = {value!r}: expected three numbers (R, G, B on the 0-255 scale)")
    if option == "std" and min(value) <= 0:
        raise ConfigError(f"option std = {value!r}: every value must be positive")
    return (float(value[0]), float(value[1]), float(value[2]))


def make_transform(
    split: str,
    *,
    augment: bool | None,
    scale: Any,
    crop_size: Any,
    ratio_range: Any = (0.5, 2.0),
    cat_max_ratio: float = 1.0,
    test_scale: Any = None,
    test_size_divisor: int = 1,
    mean: Any = IMAGENET_MEAN,
    std: Any = IMAGENET_STD,
) -> tuple[Compose, bool]:
    """``(pipeline, random)`` of a split: training pipeline if ``augment`` (default: split == "train").

    ``mean``/``std``: normalisation (ImageNet by default; Segmenter's configs use 127.5 for both).
    """
    augment = split == "train" if augment is None else bool(augment)
    stats = {"mean": as_statistics(mean, "mean"), "std": as_statistics(std, "std")}
    if augment:
        ratios = as_pair(ratio_range, "ratio_range", minimum=0.01)
        if not 0 < cat_max_ratio <= 1:
            raise ConfigError(f"option cat_max_ratio = {cat_max_ratio!r}: expected a number in (0, 1]")
        crop = tuple(int(v) for v in as_pair(crop_size, "crop_size"))
        pipeline = train_pipeline(
            scale=as_pair(scale, "scale"), crop_size=crop, ratio_range=ratios, cat_max_ratio=cat_max_ratio, **stats
        )
        return pipeline, True
    test = None if test_scale is None else as_pair(test_scale, "test_scale")
    divisor = as_count(test_size_divisor, "test_size_divisor")
    return val_pipeline(test_scale=test, test_size_divisor=divisor or 1, **stats), False
