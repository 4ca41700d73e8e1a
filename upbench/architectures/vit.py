"""Plain Vision Transformer encoder with patch 16 (Dosovitskiy et al. 2021), as used by Segmenter.

One feature map at stride 16. As mmseg's ``VisionTransformer`` in Segmenter: a class token joins
the patch tokens through the blocks and is dropped at the end; the learned position embedding is
defined on the preset's grid (``pos_embed`` (1, C, g, g) plus ``cls_pos`` (1, 1, C) for the class
token; mmseg stores both as one (1, 1 + g*g, C) tensor) and resized (bicubic) to the grid of each
input, so any multiple of 16 works.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from upbench.architectures.layers import DropPath, drop_path_rates
from upbench.architectures.presets import ViTPreset

PATCH = 16


class ViTBlock(nn.Module):
    """Pre-norm block: multi-head self-attention and a GELU MLP, each residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, drop_path: float, eps: float = 1e-6) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))
        self.drop_path = DropPath(drop_path)

    def attention(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attention(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """``forward(images[B, 3, H, W]) -> Tensor[B, dim, H/16, W/16]`` (H, W multiples of 16)."""

    def __init__(self, preset: ViTPreset, in_channels: int = 3) -> None:
        super().__init__()
        self.dim = preset.dim
        self.pos_interpolation = preset.pos_interpolation
        self.patch_embed = nn.Conv2d(in_channels, preset.dim, PATCH, PATCH)
        grid = preset.img_size // PATCH
        self.cls_token = nn.Parameter(torch.zeros(1, 1, preset.dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, preset.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, preset.dim, grid, grid))
        rates = drop_path_rates(preset.drop_path, [preset.depth])
        self.blocks = nn.ModuleList(
            ViTBlock(preset.dim, preset.heads, preset.mlp_ratio, r, preset.ln_eps) for r in rates
        )
        self.norm = nn.LayerNorm(preset.dim, eps=preset.ln_eps)
        for p in (self.cls_token, self.cls_pos, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        b, c, h, w = x.shape
        pos = self.pos_embed
        if pos.shape[-2:] != (h, w):
            pos = F.interpolate(pos, size=(h, w), mode=self.pos_interpolation, align_corners=False)
        x = (x + pos).flatten(2).transpose(1, 2)
        x = torch.cat([(self.cls_token + self.cls_pos).expand(b, -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 1:]).transpose(1, 2).reshape(b, c, h, w)
