"""LoftUp: coordinate-based cross-attention feature upsampler (Huang et al., ICCV 2025, arXiv:2504.14032).

Official code: andrehuang/loftup ``upsamplers/upsamplers.py`` (``LoftUp``, ``UpsamplerwithChannelNorm``),
``upsamplers/layers.py`` (``ChannelNorm``, ``LayerNorm``, ``MinMaxScaler``, ``ImplicitFeaturizer``,
``CATransformer``) and ``hubconf.py`` (released models: ``LoftUp(dim, lr_pe_type="sine")`` behind a
``ChannelNorm(dim)`` of the LR features).

Method. Every HR pixel gets Fourier features of its ``[-1, 1]^2`` coordinates and of its min-max-scaled
colour (``n_freqs = 20`` frequencies ``exp(linspace(-2, 10))``, learned phase biases) plus the colour;
``first_conv`` (ChannelNorm, two 3x3 conv + BatchNorm + ReLU) maps them to ``dim + 20`` channels. The LR
features, channel-normalised, are concatenated with 20 sine features of their own grid (``lr_pe``,
5 frequencies). ``ca_transformer``: 2 layers of cross-attention (HR pixels attend to all LR pixels,
``nn.MultiheadAttention``, 4 heads, pre-LayerNorm, residual) and a GELU MLP (residual), a final
LayerNorm; ``final_conv`` (1x1 conv to ``dim`` and a channels-first LayerNorm) gives the HR features.

Here. The attention is ``F.scaled_dot_product_attention`` with the ``nn.MultiheadAttention`` weights
(same projections, scale and output projection; no materialised ``(B, HW, hw)`` weights). Parameter names
are those of the released ``UpsamplerwithChannelNorm`` (``upsampler.*``, ``channelnorm.*``), so the
Hugging Face checkpoints (``haiwen/loftup-*``, ``pytorch_model.bin``) load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from upbench.errors import InvalidOptionError
from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import PositiveInt


class ChannelNorm(nn.Module):
    """``nn.LayerNorm`` over the channels of a ``(B, C, H, W)`` map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerNorm(nn.Module):
    """Channels-first LayerNorm written out (ConvNeXt style, ``eps=1e-6``), as LoftUp's ``final_conv``."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).square().mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + self.eps)) + self.bias[:, None, None]


class MinMaxScaler(nn.Module):
    """Per channel, over the whole batch and image: ``(x - min) / max(max - min, 1e-4) - 0.5``."""

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        flat = x.transpose(0, 1).reshape(c, -1)
        low = flat.amin(dim=-1).view(1, c, 1, 1)
        span = flat.amax(dim=-1).view(1, c, 1, 1) - low
        return (x - low) / span.clamp_min(0.0001) - 0.5


class ImplicitFeaturizer(nn.Module):
    """Sine and cosine Fourier features of the ``[-1, 1]^2`` pixel grid (and of the colours)."""

    def __init__(self, color_feats: bool = True, n_freqs: int = 10, learn_bias: bool = True, color_dim: int = 3):
        super().__init__()
        self.color_feats = color_feats
        self.n_freqs = n_freqs
        self.dim_multiplier = 2 + (color_dim if color_feats else 0)
        self.biases = nn.Parameter(torch.randn(2, self.dim_multiplier, n_freqs)) if learn_bias else None

    def forward(self, original_image: Tensor) -> Tensor:
        b, _, h, w = original_image.shape
        dtype, device = original_image.dtype, original_image.device
        rows = torch.linspace(-1, 1, h, device=device, dtype=dtype)
        cols = torch.linspace(-1, 1, w, device=device, dtype=dtype)
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).unsqueeze(0).expand(b, 2, h, w)
        feats = torch.cat([grid, original_image], dim=1) if self.color_feats else grid
        freqs = torch.exp(torch.linspace(-2, 10, self.n_freqs, device=device, dtype=dtype))
        feats = feats.unsqueeze(1) * freqs.view(1, self.n_freqs, 1, 1, 1)  # (B, F, M, H, W)
        shape = (b, self.n_freqs * self.dim_multiplier, h, w)
        if self.biases is None:
            sin_feats = cos_feats = feats
        else:  # LoftUp reshapes the (M, F) biases to (F, M) without transposing; kept as is
            biases = self.biases.to(dtype)
            sin_feats = feats + biases[0].reshape(1, self.n_freqs, self.dim_multiplier, 1, 1)
            cos_feats = feats + biases[1].reshape(1, self.n_freqs, self.dim_multiplier, 1, 1)
        out = [torch.sin(sin_feats.reshape(shape)), torch.cos(cos_feats.reshape(shape))]
        return torch.cat([*out, original_image] if self.color_feats else out, dim=1)


class FeedForward(nn.Module):
    """Pre-LayerNorm GELU MLP (``net``: LayerNorm, Linear, GELU, Dropout, Linear, Dropout)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def multihead_attention(attention: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """The output of ``attention(query, key, value)`` (batch first) through ``scaled_dot_product_attention``."""
    e, heads = attention.embed_dim, attention.num_heads
    w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attention.in_proj_bias.chunk(3)
    split = lambda t: t.unflatten(-1, (heads, e // heads)).transpose(1, 2)  # noqa: E731  (B, heads, N, d)
    q, k, v = split(F.linear(query, w_q, b_q)), split(F.linear(key, w_k, b_k)), split(F.linear(value, w_v, b_v))
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
    return attention.out_proj(out)


class CrossAttentionLayer(nn.Module):
    """``norm_q``/``norm_kv`` LayerNorms and an ``nn.MultiheadAttention`` (dropout 0)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(embed_dim=dim, num_heads=heads, dropout=0.0)

    def forward(self, query: Tensor, key_value: Tensor) -> Tensor:
        kv = self.norm_kv(key_value)
        return multihead_attention(self.attention, self.norm_q(query), kv, kv)


class CATransformer(nn.Module):
    """``depth`` x (cross-attention + residual, MLP + residual), then LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([CrossAttentionLayer(dim, heads), FeedForward(dim, mlp_dim)]) for _ in range(depth)
        )

    def forward(self, query: Tensor, key_value: Tensor) -> Tensor:
        for cross_attn, ff in self.layers:
            query = cross_attn(query, key_value) + query
            query = ff(query) + query
        return self.norm(query)


class LoftUp(nn.Module):
    """LoftUp with ``lr_pe_type="sine"`` (the released models): ``forward(lr_feats, img)``."""

    LR_PE_DIM = 2 * 5 * 2

    def __init__(self, dim: int, n_freqs: int = 20, num_heads: int = 4, num_layers: int = 2, color_dim: int = 3):
        super().__init__()
        start_dim = (2 + color_dim) * n_freqs * 2 + color_dim
        width = dim + self.LR_PE_DIM
        self.lr_pe = ImplicitFeaturizer(color_feats=False, n_freqs=5, learn_bias=True)
        self.fourier_feat = nn.Sequential(
            MinMaxScaler(), ImplicitFeaturizer(True, n_freqs=n_freqs, learn_bias=True, color_dim=color_dim)
        )
        self.first_conv = nn.Sequential(
            ChannelNorm(start_dim),
            nn.Conv2d(start_dim, width, kernel_size=3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, kernel_size=3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.final_conv = nn.Sequential(nn.Conv2d(width, dim, kernel_size=1), LayerNorm(dim))
        self.ca_transformer = CATransformer(width, depth=num_layers, heads=num_heads, mlp_dim=dim)

    def forward(self, lr_feats: Tensor, img: Tensor) -> Tensor:
        x = self.first_conv(self.fourier_feat(img))
        b, c, h, w = x.shape
        lr = torch.cat([lr_feats, self.lr_pe(lr_feats)], dim=1).flatten(2).transpose(1, 2)
        x = self.ca_transformer(x.flatten(2).transpose(1, 2), lr)
        return self.final_conv(x.transpose(1, 2).reshape(b, c, h, w))


@register_operator(
    "loftup",
    title="LoftUp",
    guided=True,
    guide_passthrough=True,  # the image queries reach the output through the transformer's residuals
    paper="ICCV 2025, arXiv:2504.14032",
    scales=None,
    any_size=True,
    family="task-agnostic",
    code="andrehuang/loftup@6620d9b upsamplers/upsamplers.py LoftUp, UpsamplerwithChannelNorm; upsamplers/layers.py",
    conventions={
        "guide": "the RGB image (normalised as the backbone's input) at the output size; guide_channels=3",
        "queries": "Fourier features of HR coordinates and min-max-scaled colours -> 2 conv3x3+BN+ReLU",
        "keys_values": "ChannelNorm(x) with 20 sine features of the LR grid (global attention, all LR pixels)",
        "output": "new features (not a residual of x), ChannelNorm space of the released models; the image "
        "queries reach it through the residual connections, so guide content can pass straight through",
        "batch_coupling": "MinMaxScaler and BatchNorm (train mode) use statistics over the whole batch",
    },
    deviations=(
        "Only lr_pe_type='sine' (every released model); the 'learnable' variant with a fixed lr_size is not built.",
        "Attention through scaled_dot_product_attention with the nn.MultiheadAttention weights (same result, "
        "no materialised attention weights; LoftUp calls the module with need_weights=True).",
        "Any guide_channels: the colour Fourier features use guide_channels colours (LoftUp: 3).",
        "channel_norm=True (default) includes the ChannelNorm of the released UpsamplerwithChannelNorm "
        "(parameter names channelnorm.*, upsampler.*); channel_norm=False is LoftUp alone.",
    ),
    notes=(
        "Official checkpoints: huggingface haiwen/loftup-<backbone> pytorch_model.bin load with strict=True "
        "into loftup built with in_channels = the backbone's dimension.",
        "Cost grows with (output pixels) x (LR pixels): global attention.",
        "Licence of the official code: MIT.",
    ),
)
class LoftUpOperator(Upsampler):
    """LoftUp behind the ChannelNorm of the released models (``channelnorm``, ``upsampler``)."""

    default_guide_channels = 3  # guided by the RGB image, as in its paper

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        n_freqs: PositiveInt = 20,
        num_heads: PositiveInt = 4,
        num_layers: PositiveInt = 2,
        channel_norm: bool = True,
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        width = in_channels + LoftUp.LR_PE_DIM
        if width % num_heads:
            raise InvalidOptionError(
                f"operator 'loftup': in_channels + 20 = {width} must be divisible by num_heads={num_heads}"
            )
        self.channelnorm = ChannelNorm(in_channels) if channel_norm else None
        self.upsampler = LoftUp(in_channels, n_freqs, num_heads, num_layers, color_dim=self.guide_channels)

    def upsample(self, x: Tensor, guide: Tensor, size: tuple[int, int]) -> Tensor:
        lr_feats = self.channelnorm(x) if self.channelnorm is not None else x
        return self.upsampler(lr_feats, guide.to(x.dtype))
