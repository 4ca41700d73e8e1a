"""NAF: Neighborhood Attention Filtering, a VFM-agnostic feature upsampler (valeo.ai, CVPR 2026).

Official code: valeoai/NAF ``src/model/naf.py`` (``NAF``, ``ImageEncoder``), ``src/layers/attentions.py``
(``CrossAttention`` on NATTEN's ``na2d_qk``/``na2d_av`` or ``na2d``), ``src/layers/convolutions.py``
(``encoder``, ``EncBlock``), ``src/layers/rope.py`` (DINOv3's axial ``RoPE``) and ``config/model/naf.yaml``
(``dim=256, heads_attn=4, heads_rope=4, kernel_size=9, img_layers=2, rope_rescale=2``).

Method. The image is encoded by two conv stacks (1x1: ``encoder``; 3x3: ``sem_encoder``; 128 channels
each, conv + 2 non-residual GroupNorm/SiLU/conv blocks, reflect padding), average-pooled to the output
size and rotated by an axial RoPE (4 heads of 64 channels, periods ``100 ** (2i / 32)``, coordinates the
pixel centres in ``[-1, 1]``; in training they are rescaled by a random log-uniform factor in
``[1/2, 2]``). Queries are that encoding; keys are it average-pooled to the LR size; values are the raw LR
features. Keys and values are resized to the output size (``nearest-exact``) and NATTEN's neighbourhood
attention with a 9x9 kernel and dilation ``(H // h, W // w)`` runs on the HR grid: each HR pixel attends
9x9 LR pixels around its own (windows shifted inwards at the borders, as NATTEN), 4 heads, scale
``64 ** -0.5``; the value channels are split into the 4 heads.

Here. NATTEN (CUDA wheels) is replaced by pure PyTorch: the HR->LR indices of every window tap are
computed once per size (NATTEN's window rule on the dilated HR grid, then ``nearest-exact``) and the
attention runs as batched matmuls over chunks of HR rows (:func:`neighbourhood_attention`), with bounded
temporaries. Parameter names are NAF's (only the image encoder has weights, plus the ``rope.periods``
buffer), so ``naf_release.pth`` loads with ``strict=True`` for any feature size.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from upbench.errors import InputShapeError, InvalidOptionError
from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import OddPositiveInt, PositiveFloat, PositiveInt

#: Largest number of attention scores (batch x heads x taps x HR pixels) held at once.
DEFAULT_CHUNK_ELEMENTS = 1 << 25


class EncBlock(nn.Module):
    """NAF's ``EncBlock`` with ``residual=False``: GroupNorm, SiLU, conv, GroupNorm, SiLU, conv."""

    def __init__(self, channels: int, kernel_size: int, num_groups: int = 8) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.norm1 = nn.GroupNorm(num_groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad, padding_mode="reflect")
        self.norm2 = nn.GroupNorm(num_groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad, padding_mode="reflect")
        self.activation_fn = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.activation_fn(self.norm1(x)))
        return self.conv2(self.activation_fn(self.norm2(x)))


def encoder(in_dim: int, hidden_dim: int, kernel_size: int, ks_res: int, num_layers: int = 2) -> nn.Sequential:
    """A conv ``in_dim -> hidden_dim`` (reflect padding, bias) and ``num_layers`` :class:`EncBlock` s."""
    conv = nn.Conv2d(in_dim, hidden_dim, kernel_size, padding=kernel_size // 2, padding_mode="reflect")
    return nn.Sequential(conv, *[EncBlock(hidden_dim, ks_res) for _ in range(num_layers)])


class RoPE(nn.Module):
    """DINOv3's axial RoPE as NAF uses it: per head, ``D/4`` periods for rows and for columns, no weights."""

    def __init__(self, embed_dim: int, num_heads: int, base: float = 100.0, rescale_coords: float | None = 2.0):
        super().__init__()
        self.num_heads = num_heads
        self.d_head = embed_dim // num_heads
        self.rescale_coords = rescale_coords
        periods = base ** (2 * torch.arange(self.d_head // 4, dtype=torch.float32) / (self.d_head // 2))
        self.register_buffer("periods", periods, persistent=True)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        dev = x.device
        coords_h = torch.arange(0.5, h, device=dev, dtype=torch.float32) / h
        coords_w = torch.arange(0.5, w, device=dev, dtype=torch.float32) / w
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1) * 2.0 - 1.0
        if self.training and self.rescale_coords is not None:  # log-uniform in [1/rescale, rescale]
            log_max = math.log(self.rescale_coords)
            coords = coords * torch.empty(1, device=dev).uniform_(-log_max, log_max).exp()
        angles = 2 * math.pi * coords[:, :, None] / self.periods.float()[None, None, :]  # (HW, 2, D/4)
        angles = angles.flatten(1, 2).tile(2)  # (HW, D): [rows, cols, rows, cols]
        work = torch.promote_types(x.dtype, torch.float32)  # angles in float32 as NAF; float64 stays float64
        heads = x.to(work).view(b, self.num_heads, self.d_head, h * w).transpose(-1, -2)  # (B, n, HW, D)
        x1, x2 = heads.chunk(2, dim=-1)
        out = heads * angles.cos() + torch.cat([-x2, x1], dim=-1) * angles.sin()
        return out.transpose(-1, -2).reshape(b, c, h, w).to(x.dtype)


class ImageEncoder(nn.Module):
    """``encoder`` (1x1) and ``sem_encoder`` (3x3) concatenated, pooled to the output size, rotated by RoPE."""

    def __init__(
        self, in_channels: int, out_channels: int, heads_rope: int, img_layers: int, rope_rescale: float | None
    ):
        super().__init__()
        self.encoder = encoder(in_channels, out_channels // 2, kernel_size=1, ks_res=1, num_layers=img_layers)
        self.sem_encoder = encoder(in_channels, out_channels // 2, kernel_size=3, ks_res=3, num_layers=img_layers)
        self.rope = RoPE(out_channels, heads_rope, base=100.0, rescale_coords=rope_rescale)

    def forward(self, x: Tensor, output_size: tuple[int, int]) -> Tensor:
        x = torch.cat([self.encoder(x), self.sem_encoder(x)], dim=1)
        return self.rope(F.adaptive_avg_pool2d(x, output_size))


def nearest_exact_index(out_len: int, in_len: int) -> np.ndarray:
    """Source index of ``F.interpolate(mode='nearest-exact')``: ``min(floor((i + 0.5) * in/out), in - 1)``, float32."""
    scale = np.float32(in_len) / np.float32(out_len)
    src = np.floor((np.arange(out_len, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64)
    return np.minimum(src, in_len - 1)


def window_taps(out_len: int, in_len: int, kernel_size: int) -> tuple[Tensor, Tensor, bool]:
    """Tensors of :func:`_window_taps` and whether every tap exists (a Python bool: no data-dependent branch)."""
    index, valid = _window_taps(out_len, in_len, kernel_size)
    return torch.from_numpy(index), torch.from_numpy(valid), bool(valid.all())


@lru_cache(maxsize=128)
def _window_taps(out_len: int, in_len: int, kernel_size: int) -> tuple[np.ndarray, np.ndarray]:
    """LR index ``(out_len, k)`` of each window tap along one axis and whether the tap exists.

    NATTEN's rule on the HR axis with dilation ``d = out_len // in_len``: positions of residue ``r = i % d``
    form a sub-grid of length ``L``; the window is ``k`` consecutive sub-grid positions around ``i // d``,
    shifted inwards at the ends. If ``L < k`` (NATTEN rejects this) the window is the whole sub-grid and the
    missing taps are marked invalid. HR positions map to LR rows by ``nearest-exact``.
    """
    d = out_len // in_len
    src = nearest_exact_index(out_len, in_len)
    index = np.zeros((out_len, kernel_size), dtype=np.int64)
    valid = np.zeros((out_len, kernel_size), dtype=bool)
    for i in range(out_len):
        r, sub = i % d, i // d
        length = (out_len - r + d - 1) // d
        n = min(kernel_size, length)
        start = max(0, min(sub - kernel_size // 2, length - kernel_size))
        positions = r + d * (start + np.arange(n))
        index[i, :n], valid[i, :n] = src[positions], True
        index[i, n:] = src[positions[-1]]
    return index, valid


def neighbourhood_attention(
    q: Tensor, k: Tensor, v: Tensor, kernel_size: int, scale: float, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> Tensor:
    """NAF's cross-scale neighbourhood attention without NATTEN.

    The window of HR pixel ``(i, j)`` is separable: LR rows ``R[i, a]`` times LR columns ``C[j, c]``
    (:func:`window_taps`). For a chunk of HR rows, the keys of the ``k`` window rows of each HR row are
    gathered (``(k, w)`` LR pixels, all LR columns), one batched matmul scores every HR pixel of the row
    against them, and the ``k x k`` window entries are picked from those scores; the softmax weights are
    scattered back to the same ``(k, w)`` layout and one batched matmul with the gathered values gives the
    output. Cost: ``D * k * w`` multiply-adds per HR pixel and head (NATTEN: ``D * k * k``), in BLAS.

    Args:
        q: HR queries ``(B, n, Dq, H, W)`` (heads split).
        k: LR keys ``(B, n, Dq, h, w)``.
        v: LR values ``(B, n, Dv, h, w)``.
        kernel_size: window size ``k`` (odd).
        scale: factor of the scores (NAF: ``(dim / heads) ** -0.5``).
        chunk_elements: bound on the largest temporary (chunks of HR rows).

    Returns:
        ``(B, n, Dv, H, W)``.
    """
    b, heads, dq, big_h, big_w = q.shape
    dv, kk, w = v.shape[2], kernel_size, k.shape[-1]
    rows_idx, rows_ok, rows_full = window_taps(big_h, k.shape[-2], kk)
    cols_idx, cols_ok, cols_full = window_taps(big_w, w, kk)
    rows_idx, rows_ok, cols_idx, cols_ok = (t.to(q.device) for t in (rows_idx, rows_ok, cols_idx, cols_ok))
    step = max(1, chunk_elements // max(1, b * heads * kk * w * max(dq, dv, big_w)))
    parts = []
    for i0 in range(0, big_h, step):
        i1 = min(big_h, i0 + step)
        rows = i1 - i0
        taps = rows_idx[i0:i1].flatten()
        keys = k.index_select(3, taps).view(b, heads, dq, rows, kk * w).permute(0, 1, 3, 2, 4)  # (B, n, r, Dq, k*w)
        queries = q[..., i0:i1, :].permute(0, 1, 3, 4, 2) * scale  # (B, n, r, W, Dq)
        dense = (queries @ keys).view(b, heads, rows, big_w, kk, w)
        pick = cols_idx.view(1, 1, 1, big_w, 1, kk).expand(b, heads, rows, big_w, kk, kk)
        scores = dense.gather(-1, pick)  # (B, n, r, W, a, c): LR pixel (R[i, a], C[j, c])
        if not (rows_full and cols_full):  # LR smaller than the window: mask the missing taps
            blocked = ~(rows_ok[i0:i1, None, :, None] & cols_ok[None, :, None, :])  # (r, W, k, k)
            scores = scores.masked_fill(blocked, float("-inf"))
        weights = scores.flatten(-2).softmax(dim=-1).view(b, heads, rows, big_w, kk, kk)
        spread = weights.new_zeros(b, heads, rows, big_w, kk, w).scatter_add(-1, pick, weights)
        values = v.index_select(3, taps).view(b, heads, dv, rows, kk * w).permute(0, 1, 3, 4, 2)  # (B, n, r, k*w, Dv)
        out = spread.view(b, heads, rows, big_w, kk * w) @ values  # (B, n, r, W, Dv)
        parts.append(out.permute(0, 1, 4, 2, 3))
    return torch.cat(parts, dim=3) if len(parts) > 1 else parts[0]


@register_operator(
    "naf",
    title="NAF",
    guided=True,
    paper="CVPR 2026",
    scales=None,
    any_size=True,
    family="task-agnostic",
    code="valeoai/NAF@ad4e24d src/model/naf.py NAF (+ src/layers/{attentions,convolutions,rope}.py, config/model)",
    conventions={
        "guide": "the RGB image (normalised as the backbone's input) at the output size; guide_channels=3",
        "queries": "image encoding (1x1 and 3x3 conv stacks) pooled to the output size, axial RoPE",
        "keys": "the same encoding average-pooled to the LR size; values: the raw LR features x",
        "window": "9x9 LR neighbourhood of each HR pixel (NATTEN's shifted windows, dilation = output // input)",
        "heads": "4 attention heads; in_channels must be divisible by 4 (value channels split per head)",
    },
    deviations=(
        "NATTEN's na2d_qk/na2d_av (CUDA) are replaced by batched matmuls of each HR row against the k window rows "
        "of LR keys (all LR columns), then the window entries are picked (same windows and nearest-exact resize as "
        "NAF, float64 loop reference test); MACs are D*k*w per HR pixel and head instead of NATTEN's D*k*k.",
        "LR maps smaller than the kernel (9) along an axis: the window covers the whole axis (missing taps masked); "
        "NATTEN raises an error there.",
        "NAF bilinearly shrinks an image larger than 4x the output size first; here the guide is the image at the "
        "output size, so that branch never applies.",
        "The RoPE rotation is computed in float32 and cast back to the input dtype (NAF returns float32).",
        "The output must be at least the LR size (dilation >= 1), as NATTEN.",
    ),
    notes=(
        "Official checkpoint: naf_release.pth (GitHub release of valeoai/NAF) loads with strict=True for any "
        "in_channels (NAF is VFM-agnostic; only the image encoder has weights).",
        "Licence of the official code: Apache-2.0 (rope.py: DINOv3 License Agreement, Meta).",
    ),
)
class NAF(Upsampler):
    """NAF with the official names: ``image_encoder`` (``encoder``, ``sem_encoder``, ``rope``)."""

    default_guide_channels = 3  # guided by the RGB image, as in its paper

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        dim: PositiveInt = 256,
        heads_attn: PositiveInt = 4,
        heads_rope: PositiveInt = 4,
        kernel_size: OddPositiveInt = 9,
        img_layers: PositiveInt = 2,
        rope_rescale: PositiveFloat | None = 2.0,
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        checks = (
            ("dim", dim, dim % 16 == 0 and dim % (4 * heads_rope) == 0 and dim % heads_attn == 0),
            ("heads_attn", heads_attn, in_channels % heads_attn == 0),
        )
        for option, value, rule in checks:
            if not rule:
                raise InvalidOptionError(
                    f"operator 'naf': option '{option}'={value!r} is invalid (dim a multiple of 16, of 4*heads_rope "
                    f"and of heads_attn; in_channels={in_channels} divisible by heads_attn; kernel_size odd)"
                )
        self.dim, self.heads_attn, self.kernel_size = dim, heads_attn, kernel_size
        self.image_encoder = ImageEncoder(self.guide_channels, dim, heads_rope, img_layers, rope_rescale)

    def check_inputs(self, x: Tensor, guide: Tensor | None, output_size: tuple[int, int] | None = None) -> None:
        super().check_inputs(x, guide, output_size)
        if guide.shape[-2] < x.shape[-2] or guide.shape[-1] < x.shape[-1]:
            raise InputShapeError(
                f"operator 'naf': the output ({guide.shape[-2]}x{guide.shape[-1]}) must be at least the input "
                f"({x.shape[-2]}x{x.shape[-1]}) along both axes"
            )

    def upsample(self, x: Tensor, guide: Tensor, size: tuple[int, int]) -> Tensor:
        queries = self.image_encoder(guide.to(x.dtype), size)
        keys = F.adaptive_avg_pool2d(queries, tuple(x.shape[-2:]))
        b, n = x.shape[0], self.heads_attn
        split = lambda t: t.unflatten(1, (n, t.shape[1] // n))  # noqa: E731  (B, C, H, W) -> (B, n, C/n, H, W)
        scale = (self.dim // n) ** -0.5
        out = neighbourhood_attention(split(queries), split(keys), split(x.to(queries.dtype)), self.kernel_size, scale)
        return out.reshape(b, self.in_channels, *size).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dim={self.dim}, kernel_size={self.kernel_size}"
