"""Guided bilinear: the matched control for guided operators (upbench's own, no paper).

``out = bilinear_s(x) + conv1x1(guide)``: bilinear upsampling of the LR feature
(``align_corners=False``, as :mod:`upbench_operators.bilinear`) plus the HR guide projected to
``in_channels`` by a learned 1x1 convolution (with bias, PyTorch's default initialisation). It is
the simplest operator through which the HR guide reaches the output directly, without any
content-aware upsampling. A guided operator that does not beat it has not shown that its gain
comes from upsampling rather than from the guide (in the plain model: the full-resolution image
stem, which exists only for guided operators) reaching the classifier.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from upbench.registry import register_operator
from upbench.upsampler import Upsampler


@register_operator(
    "guided_bilinear",
    title="Guided bilinear (control)",
    guided=True,
    guide_passthrough=True,
    code="upbench control: F.interpolate(x, mode='bilinear', align_corners=False) + nn.Conv2d(C_g, C, 1)(guide)",
    conventions={
        "lr_window": "continuous half-pixel centre (p + 0.5)/s - 0.5",
        "border": "coordinates clamped to the LR border",
        "align_corners": "False",
        "guide": "added after a learned 1x1 projection to in_channels",
    },
    notes=(
        "A control, not a published operator: it measures what the HR guide alone adds to bilinear "
        "upsampling. Report guided operators as a gain over it as well as over bilinear.",
    ),
)
class GuidedBilinear(Upsampler):
    """``bilinear(x) + proj(guide)``; ``proj`` is a 1x1 convolution ``guide_channels -> in_channels``."""

    def __init__(self, in_channels: int, scale: int, *, guide_channels: int | None = None) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        self.proj = nn.Conv2d(self.guide_channels, in_channels, kernel_size=1)

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        assert guide is not None  # checked by Upsampler.forward
        up = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return up + self.proj(guide)
