"""Transposed convolution (deconvolution), generalised from x2 to every integer scale.

The shared ``build_upsampler`` (zmhhmz/ReSFU, tiny-smart/segmentation-with-upsamplers) builds
``ConvTranspose2d(C, C, kernel_size=3, stride=2, padding=1, output_padding=1)`` whatever scale it
is asked for. upbench builds one transposed convolution with ``stride = s`` and, by default,
``kernel_size = s + 1``, ``padding = 1``, ``output_padding = 1``: exactly the official layer at
x2, and an output of exactly ``s*h x s*w`` for every integer ``s`` (adjacent footprints overlap
by one pixel as they do at x2). A different ``kernel_size >= s`` may be chosen; padding and
output padding are then derived so that the output is still ``s*h x s*w``.

Parameters are named ``weight`` and ``bias`` like the official bare ``nn.ConvTranspose2d``, so its
state dict loads with ``strict=True``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from upbench.errors import InvalidOptionError
from upbench.registry import register_operator
from upbench.upsampler import Upsampler


def deconv_geometry(scale: int, kernel_size: int) -> tuple[int, int]:
    """``(padding, output_padding)`` that make a stride-``scale`` deconv output ``scale`` x the input."""
    if kernel_size < scale:
        raise InvalidOptionError(f"operator 'deconv': kernel_size must be >= scale ({scale}), got {kernel_size}")
    padding = (kernel_size - scale + 1) // 2
    output_padding = 2 * padding - (kernel_size - scale)
    return padding, output_padding


@register_operator(
    "deconv",
    title="Deconv",
    guided=False,
    guide_passthrough=False,
    code=(
        "nn.ConvTranspose2d(C, C, 3, stride=2, padding=1, output_padding=1) in zmhhmz/ReSFU@62e9d9c build_upsampler.py"
    ),
    conventions={"kernel": "stride s, kernel s+1, padding 1, output_padding 1 (official at s=2)"},
    deviations=(
        "The official layer has stride 2 whatever scale is requested (so x4/x8 configs silently "
        "upsample x2); upbench uses stride s with kernel s+1, identical to the official layer at s=2.",
    ),
)
class Deconv(Upsampler):
    """One transposed convolution ``C -> C`` with stride ``scale``; ignores ``guide``.

    Args:
        kernel_size: kernel size; ``None`` means ``scale + 1`` (3 at x2, as the official layer).
    """

    def __init__(
        self, in_channels: int, scale: int, *, guide_channels: int | None = None, kernel_size: int | None = None
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        self.kernel_size = scale + 1 if kernel_size is None else kernel_size
        self.padding, self.output_padding = deconv_geometry(scale, self.kernel_size)
        layer = nn.ConvTranspose2d(
            in_channels,
            in_channels,
            self.kernel_size,
            stride=scale,
            padding=self.padding,
            output_padding=self.output_padding,
        )
        # Keep the official parameter names (weight, bias) at the top level of the module.
        self.weight = layer.weight
        self.bias = layer.bias

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        return F.conv_transpose2d(
            x, self.weight, self.bias, stride=self.scale, padding=self.padding, output_padding=self.output_padding
        )
