"""Mix Transformer (MiT), the hierarchical encoder of SegFormer (Xie et al., NeurIPS 2021).

Four stages at strides 4, 8, 16 and 32. Each stage is an overlapping patch embedding (a strided
convolution), blocks of efficient self-attention (keys and values spatially reduced by
``sr_ratio``) and a Mix-FFN (an MLP with a depthwise 3x3 convolution), then a LayerNorm.
Written from the paper; the layer layout follows the official code so that the B0/B1 presets have
the published sizes (encoders of 3.3 M and 13.2 M parameters; 3.8 M and 13.7 M with the
head at 150 classes) and every official checkpoint loads (:mod:`upbench.architectures.pretrained`).
LayerNorms use eps 1e-6 (mmseg's ``MixVisionTransformer``; the original release's patch-embedding
norms use torch's default 1e-5: a relative change of about 5e-6 for unit-variance features).
"""

from __future__ import annotations

from torch import Tensor, nn

from upbench.architectures.layers import DropPath, drop_path_rates
from upbench.architectures.presets import MiTPreset


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with overlapping windows, then LayerNorm over channels."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientAttention(nn.Module):
    """Multi-head self-attention whose keys/values are downsampled ``sr_ratio`` times."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio) if sr_ratio > 1 else None
        self.norm = nn.LayerNorm(dim, eps=eps) if sr_ratio > 1 else None

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
        src = x
        if self.sr is not None:
            src = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            src = self.norm(src)
        k, v = self.kv(src).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """Linear -> depthwise 3x3 conv -> GELU -> Linear (the conv replaces position embeddings)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: efficient attention and Mix-FFN, each residual."""

    def __init__(
        self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = EfficientAttention(dim, heads, sr_ratio, eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.ffn = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.ffn(self.norm2(x), h, w))


class MiT(nn.Module):
    """The 4-stage encoder: ``forward(images)`` returns ``[c1, c2, c3, c4]`` at strides 4-32.

    Args:
        preset: widths, depths, heads and reduction ratios (see
            :data:`~upbench.architectures.presets.MIT_PRESETS`).
        in_channels: image channels.
    """

    def __init__(self, preset: MiTPreset, in_channels: int = 3) -> None:
        super().__init__()
        self.dims = preset.dims
        rates = iter(drop_path_rates(preset.drop_path, preset.depths))
        self.stages = nn.ModuleList()
        prev = in_channels
        for i, (dim, depth, heads, sr) in enumerate(zip(preset.dims, preset.depths, preset.heads, preset.sr_ratios)):
            eps = preset.ln_eps
            embed = OverlapPatchEmbed(prev, dim, kernel=7 if i == 0 else 3, stride=4 if i == 0 else 2, eps=eps)
            blocks = nn.ModuleList(MiTBlock(dim, heads, sr, preset.mlp_ratio, next(rates), eps) for _ in range(depth))
            norm = nn.LayerNorm(dim, eps=eps)
            self.stages.append(nn.ModuleDict({"embed": embed, "blocks": blocks, "norm": norm}))
            prev = dim
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x, h, w = stage["embed"](x)
            for block in stage["blocks"]:
                x = block(x, h, w)
            x = stage["norm"](x)
            x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
            features.append(x)
        return features


def _init_weights(m: nn.Module) -> None:
    """Truncated-normal linears, fan-out normal convs, unit LayerNorms (as the official code)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, std=(2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
