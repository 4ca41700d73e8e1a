"""RGB <-> HSV conversion of float tensors ``[3, H, W]`` with channels in [0, 1]."""

from __future__ import annotations

import torch
from torch import Tensor


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """HSV of an RGB image; hue, saturation and value all in [0, 1] (hue 1 = 360 degrees)."""
    r, g, b = rgb.unbind(0)
    maxc, _ = rgb.max(dim=0)
    minc, _ = rgb.min(dim=0)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    hue = torch.where(maxc == r, ((g - b) / safe) % 6, hue)
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    return torch.stack([hue, sat, maxc])


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """RGB of an HSV image (the inverse of :func:`rgb_to_hsv`)."""
    h, s, v = hsv.unbind(0)
    channels = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = (n + h * 6) % 6
        channels.append(v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels)
