"""Bilinear upsampling with ``align_corners=False``: the baseline every table is measured against.

Mirrors ``nn.Upsample(scale_factor=s, mode='bilinear', align_corners=False)`` from the shared
``build_upsampler``. HR pixel ``p`` samples the LR map at the half-pixel centre
``(p + 0.5) / s - 0.5``, clamped to the border (PyTorch's convention).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from upbench.registry import register_operator
from upbench.upsampler import Upsampler


@register_operator(
    "bilinear",
    title="Bilinear",
    guided=False,
    guide_passthrough=False,
    learnable=False,
    any_size=True,
    code="torch nn.Upsample(mode='bilinear', align_corners=False) as in zmhhmz/ReSFU@62e9d9c build_upsampler.py",
    conventions={
        "lr_window": "continuous half-pixel centre (p + 0.5)*h/H - 0.5 ((p + 0.5)/s - 0.5 at integer scale s)",
        "border": "coordinates clamped to the LR border",
        "align_corners": "False",
    },
)
class Bilinear(Upsampler):
    """Bilinear upsampling (``align_corners=False``); no parameters, ignores ``guide``."""

    def __init__(
        self, in_channels: int, scale: int, *, guide_channels: int | None = None, align_corners: bool = False
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        self.align_corners = align_corners

    def upsample(self, x: Tensor, guide: Tensor | None, size: tuple[int, int]) -> Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
