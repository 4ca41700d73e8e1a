"""Whole-image and sliding-window inference (mmseg's ``whole_inference`` / ``slide_inference``)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from upbench.errors import ConfigError

MODES = ("whole", "slide")


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2 or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in pair):
        raise ConfigError(f"{name} must be a positive integer or a pair of them, got {v!r}")
    return pair  # type: ignore[return-value]


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis; the last window ends at the border."""
    n = max(size - crop + stride - 1, 0) // stride + 1
    return sorted({max(min(i * stride, size - crop), 0) for i in range(n)})


@torch.no_grad()
def slide_inference(
    model: nn.Module, images: Tensor, crop_size: int | tuple[int, int], stride: int | tuple[int, int]
) -> Tensor:
    """Average the logits of overlapping ``crop_size`` windows placed every ``stride`` pixels.

    A window larger than the image is clipped to it, so when one window covers the image the
    result is the whole-image inference.
    """
    (ch, cw), (sh, sw) = _pair(crop_size, "crop_size"), _pair(stride, "stride")
    _, _, h, w = images.shape
    total: Tensor | None = None
    count = images.new_zeros(1, 1, h, w)
    for y in window_starts(h, ch, sh):
        for x in window_starts(w, cw, sw):
            logits = model(images[..., y : y + ch, x : x + cw]).float()
            if total is None:
                total = logits.new_zeros(images.shape[0], logits.shape[1], h, w)
            total[..., y : y + ch, x : x + cw] += logits
            count[..., y : y + ch, x : x + cw] += 1
    assert total is not None
    return total / count


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: Tensor,
    *,
    mode: Literal["whole", "slide"] = "whole",
    crop_size: int | tuple[int, int] = 512,
    stride: int | tuple[int, int] = 341,
    size: tuple[int, int] | None = None,
) -> Tensor:
    """Logits of ``images`` (whole image or sliding window), resized to ``size`` if given."""
    if mode == "whole":
        logits = model(images).float()
    elif mode == "slide":
        logits = slide_inference(model, images, crop_size, stride)
    else:
        raise ConfigError(f"unknown inference mode '{mode}'; choose from {', '.join(MODES)}")
    if size is not None and tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits
