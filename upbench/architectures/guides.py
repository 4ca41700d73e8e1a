"""Shallow image stems that give guided operators a high-resolution guide in plain models.

The layout is the guide extractor of ReSFU's Segmenter config: conv3x3 (3 -> 64, replicate
padding) -> GroupNorm(1, 64) -> ReLU -> conv3x3 (64 -> 32). Its two strides (2, 2) put the guide
at 1/4; (2, 1) gives 1/2 and (1, 1) full resolution for the x8 and x16 settings.
"""

from __future__ import annotations

from torch import Tensor, nn

_STRIDES = {1: (1, 1), 2: (2, 1), 4: (2, 2)}


class ImageStem(nn.Module):
    """``forward(images[B, 3, H, W]) -> Tensor[B, out_channels, H/stride, W/stride]``.

    Args:
        stride: output stride, 1, 2 or 4.
        out_channels: channels of the guide (32 in ReSFU's config).
        hidden: channels after the first convolution.
    """

    def __init__(self, stride: int, out_channels: int = 32, hidden: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if stride not in _STRIDES:
            raise ValueError(f"ImageStem stride must be one of {sorted(_STRIDES)}, got {stride}")
        s1, s2 = _STRIDES[stride]
        self.stride = stride
        self.out_channels = out_channels
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, s1, padding=1, padding_mode="replicate"),
            nn.GroupNorm(1, hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 3, s2, padding=1),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)
