"""Small building blocks shared by the encoders: stochastic depth and a transformer MLP."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_rates(total: float, depths: tuple[int, ...] | list[int]) -> list[float]:
    """Linearly increasing stochastic-depth rates over all blocks (0 for the first)."""
    n = sum(depths)
    return [float(r) for r in torch.linspace(0, total, n, device="cpu")] if n else []  # also under a meta device
