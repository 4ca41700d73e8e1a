"""Nearest-neighbour upsampling: the parameter-free lower bound.

Mirrors ``nn.Upsample(scale_factor=s, mode='nearest')`` from the ``build_upsampler`` shared by
the ReSFU and tiny-smart code bases: HR pixel ``p`` copies LR pixel ``floor(p / s)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from upbench.registry import register_operator
from upbench.upsampler import Upsampler


@register_operator(
    "nearest",
    title="Nearest",
    guided=False,
    guide_passthrough=False,
    learnable=False,
    any_size=True,
    code="torch nn.Upsample(mode='nearest') as in zmhhmz/ReSFU@62e9d9c mmseg/models/upsamplers/build_upsampler.py",
    conventions={
        "lr_window": "HR pixel p copies LR pixel floor(p*h/H) (floor(p/s) at integer scale s)",
        "border": "n/a",
    },
)
class Nearest(Upsampler):
    """Nearest-neighbour upsampling by ``scale`` or to any ``output_size``; no parameters, ignores ``guide``."""

    def upsample(self, x: Tensor, guide: Tensor | None, size: tuple[int, int]) -> Tensor:
        return F.interpolate(x, size=size, mode="nearest")
