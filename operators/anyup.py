"""AnyUp: universal feature upsampling (Wimmer et al., ICLR 2026, arXiv:2510.12764).

Official code: wimmerth/anyup ``anyup/model.py`` (class ``AnyUp``), ``anyup/layers/*`` (``ResBlock``,
``LearnedFeatureUnification``, ``RoPE``, ``attention/chunked_attention.py`` ``CrossAttentionBlock``,
``attention/attention_masking.py``) and ``config/model/anyup.yaml`` / ``hubconf.py`` (defaults:
``input_dim=3, qk_dim=128, kernel_size=1, kernel_size_lfu=5, window_ratio=0.1, num_heads=4``).

Method. As JAFAR, queries come from the image (``image_encoder`` + 2-D RoPE, ``query_encoder``,
average-pooled to the output size) and the output is the head-averaged attention weights applied to
the raw LR features. The keys concatenate the pooled ``key_encoder`` of the image with a
feature-agnostic encoding of the features: ``LearnedFeatureUnification`` convolves every (L2-normalised)
feature channel with ``qk_dim`` learned 5x5 kernels (zero padding, divided by the number of valid taps),
takes a softmax and averages over the channels, so any backbone dimension works with one model; then
``aggregation`` (3x3 conv + 2 ResBlocks). Each HR query attends only to the LR pixels inside a window of
``+-window_ratio`` (in ``[0, 1]`` image coordinates) around it.

Here. The attention is computed in chunks of queries (:func:`operators._vfm.averaged_attention`) with the
window as a boolean mask, without NATTEN: AnyUp's default, non-NATTEN path (its NATTEN block "does not
match the standard cross-attention exactly"). Parameter names are AnyUp's, so ``anyup_paper.pth`` and
``anyup_multi_backbone.pth`` load with ``strict=True``; no parameter depends on ``in_channels``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from upbench.errors import InputShapeError
from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import NonNegativeFloat, OddPositiveInt, PositiveInt
from upbench_operators._vfm import DEFAULT_CHUNK_ELEMENTS, RoPE, averaged_attention, check_qk_heads


class ResBlock(nn.Module):
    """AnyUp's ``ResBlock``: ``block`` = GroupNorm(8), SiLU, conv, GroupNorm(8), SiLU, conv; plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, num_groups: int = 8) -> None:
        super().__init__()
        p = kernel_size // 2
        self.block = nn.Sequential(
            nn.GroupNorm(num_groups, in_channels),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=p, padding_mode="reflect", bias=False),
            nn.GroupNorm(num_groups, out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size, padding=p, padding_mode="reflect", bias=False),
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x) + (self.shortcut(x) if self.shortcut is not None else x)


class LearnedFeatureUnification(nn.Module):
    """``out_channels`` learned ``k x k`` kernels applied to every feature channel, softmax, channel mean."""

    def __init__(self, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.basis = nn.Parameter(torch.randn(out_channels, 1, kernel_size, kernel_size))

    def forward(self, features: Tensor) -> Tensor:
        b, c, h, w = features.shape
        p = self.kernel_size // 2
        basis = self.basis.to(features.dtype)
        x = F.conv2d(F.pad(features, (p, p, p, p)), basis.repeat(c, 1, 1, 1), groups=c)  # channel ci*out + o
        ones = torch.ones(1, 1, h, w, dtype=features.dtype, device=features.device)
        valid = F.conv2d(F.pad(ones, (p, p, p, p)), torch.ones_like(basis[:1]))  # taps inside the map
        # AnyUp views the (C*out) channels as (out, C) without transposing; kept for its checkpoints.
        x = (x / valid).view(b, self.out_channels, c, h, w)
        return F.softmax(x, dim=1).mean(dim=2)


def window_mask(high: tuple[int, int], low: tuple[int, int], ratio: float) -> Tensor:
    """The window as a ``(H*W, h*w)`` bool tensor, ``True`` where blocked (see :func:`_window_mask`)."""
    return torch.from_numpy(_window_mask(tuple(high), tuple(low), float(ratio)))


@lru_cache(maxsize=64)
def _window_mask(high: tuple[int, int], low: tuple[int, int], ratio: float) -> np.ndarray:
    """``(H*W, h*w)`` bool, ``True`` where HR pixel ``q`` may not attend LR pixel ``k`` (AnyUp's window).

    HR pixel centres ``(i + 0.5) / H`` in ``[0, 1)``; the window ``[pos - ratio, pos + ratio]`` is clamped to
    ``[0, 1]`` and quantised outwards on the LR grid (floor of the start, ceil of the end), in float32.
    """
    (big_h, big_w), (lh, lw) = high, low
    r = np.float32(ratio)

    def bounds(n_high: int, n_low: int) -> tuple[np.ndarray, np.ndarray]:
        pos = (np.arange(n_high, dtype=np.float32) + np.float32(0.5)) / np.float32(n_high)
        lo = np.floor(np.clip(pos - r, 0, 1) * np.float32(n_low)).astype(np.int64)
        hi = np.ceil(np.clip(pos + r, 0, 1) * np.float32(n_low)).astype(np.int64)
        return lo, hi

    (r0, r1), (c0, c1) = bounds(big_h, lh), bounds(big_w, lw)
    rows_ok = (np.arange(lh)[None] >= r0[:, None]) & (np.arange(lh)[None] < r1[:, None])  # (H, h)
    cols_ok = (np.arange(lw)[None] >= c0[:, None]) & (np.arange(lw)[None] < c1[:, None])  # (W, w)
    allowed = rows_ok[:, None, :, None] & cols_ok[None, :, None, :]  # (H, W, h, w)
    return ~allowed.reshape(big_h * big_w, lh * lw)


class CrossAttention(nn.Module):
    """RMSNorm of queries and keys and the head-averaged weights of an ``nn.MultiheadAttention``."""

    def __init__(self, qk_dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm_q = nn.RMSNorm(qk_dim)
        self.norm_k = nn.RMSNorm(qk_dim)
        self.attention = nn.MultiheadAttention(embed_dim=qk_dim, num_heads=num_heads, dropout=0.0, batch_first=True)
        # out_proj only feeds the MultiheadAttention output that AnyUp discards: kept for the state dict, frozen.
        for p in self.attention.out_proj.parameters():
            p.requires_grad_(False)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, chunk_elements: int) -> Tensor:
        e = self.attention.embed_dim
        w_q, w_k, _ = self.attention.in_proj_weight.chunk(3)
        b_q, b_k = self.attention.in_proj_bias[:e], self.attention.in_proj_bias[e : 2 * e]
        q = F.linear(self.norm_q(query), w_q, b_q)
        k = F.linear(self.norm_k(key), w_k, b_k)
        return averaged_attention(q, k, value, self.attention.num_heads, mask=mask, chunk_elements=chunk_elements)


class CrossAttentionBlock(nn.Module):
    """A 3x3 conv on the queries, then windowed :class:`CrossAttention` on flattened maps."""

    def __init__(self, qk_dim: int, num_heads: int, window_ratio: float = 0.1) -> None:
        super().__init__()
        self.cross_attn = CrossAttention(qk_dim, num_heads)
        self.window_ratio = window_ratio
        self.conv2d = nn.Conv2d(qk_dim, qk_dim, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tensor:
        q = self.conv2d(q)
        b, _, big_h, big_w = q.shape
        mask = None
        if self.window_ratio > 0:
            mask = window_mask((big_h, big_w), tuple(k.shape[-2:]), float(self.window_ratio)).to(q.device)
        flat = lambda t: t.flatten(2).transpose(1, 2)  # noqa: E731  (B, C, H, W) -> (B, H*W, C)
        out = self.cross_attn(flat(q), flat(k), flat(v), mask, chunk_elements)
        return out.transpose(1, 2).reshape(b, v.shape[1], big_h, big_w)


@register_operator(
    "anyup",
    title="AnyUp",
    guided=True,
    paper="ICLR 2026, arXiv:2510.12764",
    scales=None,
    any_size=True,
    family="task-agnostic",
    code="wimmerth/anyup@351807a anyup/model.py AnyUp (+ anyup/layers/*, config/model/anyup.yaml)",
    conventions={
        "guide": "the RGB image (normalised as the backbone's input) at the output size; guide_channels=3",
        "queries": "image encoding (+ 2-D RoPE) average-pooled to the output size",
        "keys": "image encoding pooled to the LR size + feature-agnostic LFU encoding of normalize(x), aggregated",
        "values": "the raw LR features x",
        "window": "each HR pixel attends the LR pixels within +-window_ratio (0.1) of its centre in [0, 1]",
    },
    deviations=(
        "The windowed attention is computed in chunks of queries with a boolean mask (AnyUp's non-NATTEN "
        "path, which materialises the full (H*W, h*w) weights); the mask is built in numpy float32 with "
        "AnyUp's quantisation.",
        "attention.out_proj only feeds the MultiheadAttention output that AnyUp discards; it is kept (strict "
        "loading) but frozen (requires_grad=False).",
        "init_gaussian_derivatives (an optional initialisation of the LFU basis) is not implemented; "
        "random normal init as AnyUp's default.",
        "The LR map must be at least 2x2 (aggregation's 3x3 conv uses reflect padding).",
    ),
    notes=(
        "Official checkpoints: anyup_paper.pth and anyup_multi_backbone.pth (GitHub releases of "
        "wimmerth/anyup) load with strict=True for any in_channels (AnyUp is feature-agnostic).",
        "Cost: the LFU materialises (B, qk_dim * C, h, w) at LR (as AnyUp); attention is global with a mask.",
        "Licence of the official code: CC-BY-4.0.",
    ),
)
class AnyUp(Upsampler):
    """AnyUp with the official submodule names (``image_encoder``, ..., ``aggregation``, ``rope``)."""

    default_guide_channels = 3  # guided by the RGB image, as in its paper

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        qk_dim: PositiveInt = 128,
        kernel_size: OddPositiveInt = 1,
        kernel_size_lfu: OddPositiveInt = 5,
        window_ratio: NonNegativeFloat = 0.1,
        num_heads: PositiveInt = 4,
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        check_qk_heads("anyup", qk_dim, num_heads)
        self.qk_dim = qk_dim
        self.window_ratio = window_ratio
        pad = kernel_size // 2
        image_conv = nn.Conv2d(
            self.guide_channels, qk_dim, kernel_size, padding=pad, padding_mode="reflect", bias=False
        )
        self.image_encoder = self._make_encoder(image_conv)
        self.key_encoder = self._make_encoder(nn.Conv2d(qk_dim, qk_dim, 1, bias=False))
        self.query_encoder = self._make_encoder(nn.Conv2d(qk_dim, qk_dim, 1, bias=False))
        self.key_features_encoder = self._make_encoder(LearnedFeatureUnification(qk_dim, kernel_size_lfu))
        self.cross_decode = CrossAttentionBlock(qk_dim, num_heads, window_ratio)
        self.aggregation = self._make_encoder(
            nn.Conv2d(2 * qk_dim, qk_dim, 3, padding=1, padding_mode="reflect", bias=False)
        )
        self.rope = RoPE(qk_dim)

    def _make_encoder(self, first: nn.Module) -> nn.Sequential:
        return nn.Sequential(first, ResBlock(self.qk_dim, self.qk_dim), ResBlock(self.qk_dim, self.qk_dim))

    def check_inputs(self, x: Tensor, guide: Tensor | None, output_size: tuple[int, int] | None = None) -> None:
        super().check_inputs(x, guide, output_size)
        if min(x.shape[-2:]) < 2:
            raise InputShapeError(
                f"operator 'anyup': x must be at least 2x2 (3x3 reflect-padded aggregation), got "
                f"{x.shape[-2]}x{x.shape[-1]}"
            )

    def upsample(self, x: Tensor, guide: Tensor, size: tuple[int, int]) -> Tensor:
        encoded_image = self.rope(self.image_encoder(guide.to(x.dtype)))
        queries = F.adaptive_avg_pool2d(self.query_encoder(encoded_image), size)
        keys = F.adaptive_avg_pool2d(self.key_encoder(encoded_image), tuple(x.shape[-2:]))
        keys = self.aggregation(torch.cat([keys, self.key_features_encoder(F.normalize(x, dim=1))], dim=1))
        return self.cross_decode(queries, keys, x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, qk_dim={self.qk_dim}, window_ratio={self.window_ratio}"
