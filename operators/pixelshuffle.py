"""Sub-pixel convolution: a 3x3 convolution ``C -> C*s^2`` followed by ``PixelShuffle(s)``.

Mirrors the shared ``build_upsampler``'s ``nn.Sequential(Conv2d(C, C*s*s, 3, padding=1),
PixelShuffle(s))``. The convolution is registered under the name ``"0"`` as in that
``nn.Sequential``, so official state dicts (keys ``0.weight``, ``0.bias``) load with
``strict=True``. Every HR pixel of an ``s x s`` cell reads the same 3x3 LR window: the operator
is prone to mosaic (checkerboard-free but block-wise) artifacts at high ratios, and its
parameter count grows with ``s^2``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from upbench.registry import register_operator
from upbench.upsampler import Upsampler


@register_operator(
    "pixelshuffle",
    title="PixelShuffle",
    guided=False,
    guide_passthrough=False,
    code="nn.Sequential(Conv2d(C, C*s^2, 3, padding=1), PixelShuffle(s)) in zmhhmz/ReSFU@62e9d9c build_upsampler.py",
    conventions={"lr_window": "3x3 LR window at floor(p/s)", "border": "zero padding"},
)
class PixelShuffle(Upsampler):
    """3x3 convolution to ``C*s^2`` channels, then ``pixel_shuffle(s)``; ignores ``guide``."""

    def __init__(self, in_channels: int, scale: int, *, guide_channels: int | None = None) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        self.add_module("0", nn.Conv2d(in_channels, in_channels * scale**2, kernel_size=3, padding=1))

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        return F.pixel_shuffle(self._modules["0"](x), self.scale)
