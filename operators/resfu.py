"""ReSFU: a refreshed similarity-based upsampler for direct high-ratio upsampling (arXiv:2407.02283).

Mirrors ``ReSFU`` of zmhhmz/ReSFU@62e9d9c (mmseg ``models/upsamplers/resfu.py`` and ``utils.py``,
the same module as ``demo/resfu.py`` without its visualisation copy). With ``s`` the scale:

1. GroupNorm of ``x`` and the guide; 1x1 projections ``q = W_q(guide)`` (HR) and ``k = W_k(x)``
   (LR) to the embedding dim; ``k`` is upsampled bilinearly (``align_corners=False``) to HR.
2. Detail-aware self-alignment: ``q_gs`` = 3x3 Gaussian (sigma 1, replicate padding) of ``q``.
3. Semantic-aware mutual alignment: ``q_gf`` = guided filter of ``k_up`` guided by ``q`` (nearest
   1/gf_scale subsampling, box radius ``radius // gf_scale``, ``eps``, bilinear back).
4. Two PCDC blocks (current main argument order: neighbours first, centres second):
   ``semantic(k_up, q_gf) + detail(q_gs, q)`` give ``k*k`` scores per HR pixel.
5. Neighbours whose HR position ``p + s*o`` leaves the image get -1e7; softmax over ``k*k``.
6. Fine-grained neighbour selection (``_fns``) aggregates the raw ``x``.

Parameter and buffer names mirror the official module, so an official ``state_dict`` loads with
``strict=True``. Ablation options switch off each of the paper's contributions.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from upbench.errors import InvalidOptionError
from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import NonNegativeFloat, NonNegativeInt, OddPositiveInt, PositiveFloat, PositiveInt

from ._aggregation import Aggregation, check_aggregation, fns_aggregation, reassembly
from ._layout import channels_last

OFFICIAL_COMMIT = "62e9d9c64de433680d09feab2dadfe507a2bf901"
MASK_VALUE = -1e7  # the official additive mask for out-of-image neighbours
PCDC_MID_CHANNELS = 128  # fixed in the official PCDC block


def gaussian_kernel(size: int = 3, sigma: float = 1.0) -> Tensor:
    """Normalised ``size x size`` Gaussian (float32), the official ``create_gaussian_kernel``."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma**2))
    return (kernel / kernel.sum()).float()


def norm_groups(channels: int) -> int:
    """GroupNorm groups for ``x``/guide: 32 (official mmseg); one per channel below 32 (official demo)."""
    return channels if channels < 32 else math.gcd(32, channels)


def border_mask(
    height: int, width: int, kernel_size: int, dilation: int, *, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``Tensor[1, k*k, H, W]``: 0, or -1e7 where the neighbour ``p + dilation*o`` is outside the image."""
    offsets = (torch.arange(kernel_size, device=device) - kernel_size // 2) * dilation
    rows = torch.arange(height, device=device)[None, :] + offsets[:, None]
    cols = torch.arange(width, device=device)[None, :] + offsets[:, None]
    valid_rows = (rows >= 0) & (rows < height)
    valid_cols = (cols >= 0) & (cols < width)
    valid = valid_rows[:, None, :, None] & valid_cols[None, :, None, :]
    mask = torch.zeros(valid.shape, dtype=dtype, device=device).masked_fill_(~valid, MASK_VALUE)
    return mask.reshape(1, kernel_size * kernel_size, height, width)


def dilated_inner_product(neighbours: Tensor, centres: Tensor, kernel_size: int, dilation: int) -> Tensor:
    """SAPA-style scores ``<centres(p), neighbours(p + dilation*o)>`` (replicate pad), ``B,k*k,H,W``.

    No parameters and no scaling, as SAPA's inner product.
    """
    pad = dilation * (kernel_size // 2)
    padded = F.pad(neighbours, (pad, pad, pad, pad), mode="replicate")
    height, width = centres.shape[-2:]
    scores = []
    for dy in range(0, dilation * kernel_size, dilation):
        for dx in range(0, dilation * kernel_size, dilation):
            scores.append((padded[:, :, dy : dy + height, dx : dx + width] * centres).sum(1))
    return torch.stack(scores, dim=1)


class GuidedFilter(nn.Module):
    """Guided filter with nearest subsampling: a local linear map of ``guide`` fitted to ``src``.

    State: the persistent buffer ``kernel`` (``channels, 1, 1, 2*radius//scale + 1``) of ones, as
    the official module (it is a ``state_dict`` key). Computed in at least float32 with autocast
    off (``var + eps`` with eps=1e-3 is not representable accurately in half precision).
    """

    def __init__(self, radius: int, eps: float, channels: int, scale: int = 1) -> None:
        super().__init__()
        self.radius = radius // scale
        self.eps = eps
        self.scale = scale
        self.register_buffer("kernel", torch.ones(channels, 1, 1, 2 * self.radius + 1))

    def box(self, t: Tensor) -> Tensor:
        """Zero-padded separable box sum of radius ``self.radius``.

        ``t`` may stack several maps along the channels (``n * channels``): channel ``j`` is
        summed with the kernel of channel ``j % channels``.
        """
        kernel = self.kernel.to(t.dtype)
        if t.shape[1] != kernel.shape[0]:
            kernel = kernel.repeat(t.shape[1] // kernel.shape[0], 1, 1, 1)
        t = F.conv2d(t, kernel, padding=(0, self.radius), groups=t.shape[1])
        return F.conv2d(t, kernel.transpose(2, 3), padding=(self.radius, 0), groups=t.shape[1])

    def forward(self, guide: Tensor, src: Tensor) -> Tensor:
        # The box sums of one stage run as one call on the maps stacked along the channels, and
        # the count (the same for every image) is summed once; the values are those of separate calls.
        work = torch.promote_types(guide.dtype, torch.float32)
        with torch.autocast(device_type=guide.device.type, enabled=False):
            full, g, p = guide.to(work), guide.to(work), src.to(work)
            if self.scale > 1:
                g = F.interpolate(g, scale_factor=1.0 / self.scale, mode="nearest")
                p = F.interpolate(p, scale_factor=1.0 / self.scale, mode="nearest")
            count = self.box(torch.ones_like(g[:1]))
            mean_g, mean_p, mean_gp, mean_gg = (
                self.box(torch.cat((g, p, g * p, g * g), 1)) / count.repeat(1, 4, 1, 1)
            ).chunk(4, 1)
            cov_gp = mean_gp - mean_g * mean_p
            var_g = mean_gg - mean_g * mean_g
            a = cov_gp / (var_g + self.eps)
            b = mean_p - a * mean_g
            mean_ab = self.box(torch.cat((a, b), 1)) / count.repeat(1, 2, 1, 1)
            if self.scale > 1:
                mean_ab = F.interpolate(mean_ab, size=full.shape[-2:], mode="bilinear", align_corners=False)
            mean_a, mean_b = mean_ab.chunk(2, 1)
            return torch.addcmul(mean_b, mean_a, full).to(guide.dtype)  # mean_a * full + mean_b


class PCDCBlock(nn.Module):
    """Pixel-level central difference convolution plus channel compressor (official ``PCDC_Block``).

    ``v = conv_dilated(norm(neighbours)) - (sum of kernel taps) * norm(centres) + bias``, with
    replicate padding and dilation ``s`` on the HR grid, then ReLU, grouped 1x1, ReLU, GroupNorm,
    1x1 to ``k*k`` scores. One GroupNorm (shared affine) normalises both inputs.
    """

    def __init__(
        self,
        in_channels: int,
        dilation: int,
        *,
        mid_channels: int = PCDC_MID_CHANNELS,
        kernel_size: int = 3,
        groups: int = 4,
        gn_dim: int = 8,
    ) -> None:
        super().__init__()
        self.dilation = dilation
        self.groups = groups
        self.padding = dilation * (kernel_size - 1) // 2
        self.norm = nn.GroupNorm(gn_dim, in_channels)
        self.channel_compressor = nn.Sequential(  # in-place ReLUs: their inputs are not needed again
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, mid_channels, 1, groups=groups),
            nn.ReLU(inplace=True),
            nn.GroupNorm(gn_dim, mid_channels),
            nn.Conv2d(mid_channels, kernel_size * kernel_size, 1),
        )
        self.weight = nn.Parameter(torch.empty(mid_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(1, mid_channels, 1, 1))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, neighbours: Tensor, centres: Tensor) -> Tensor:
        # The HR convolutions run in channels_last (oneDNN is 2-3x faster there; see _layout). The
        # 32-channel GroupNorm stays NCHW: its channels_last backward loses float32 accuracy when a
        # group's mean is large against its spread. The bias enters the dilated convolution and the
        # centre term is added in place with the negated (small) weight, so no (B, 128, H, W)
        # subtraction, negation or extra sum is made at HR.
        pad = self.padding
        neighbours = F.pad(channels_last(self.norm(neighbours)), (pad, pad, pad, pad), mode="replicate")
        v = F.conv2d(neighbours, self.weight, self.bias.view(-1), dilation=self.dilation, groups=self.groups)
        centre_weight = self.weight.sum(dim=(-2, -1), keepdim=True).neg()
        v = v.add_(F.conv2d(channels_last(self.norm(centres)), centre_weight, groups=self.groups))
        return self.channel_compressor(v)


def scale_gradients(modules: list[nn.Module | None], factor: float) -> None:
    """Multiply the gradient of every parameter of ``modules`` by ``factor`` (tensor hooks, official B7)."""
    for module in modules:
        if module is None:
            continue
        for param in module.parameters():
            param.register_hook(lambda grad: grad * factor)


@register_operator(
    "resfu",
    title="ReSFU",
    guided=True,
    guide_passthrough=False,
    paper="arXiv:2407.02283",
    code=(
        f"zmhhmz/ReSFU@{OFFICIAL_COMMIT} mmsegmentation/mmseg/models/upsamplers/resfu.py "
        "(ReSFU, PCDC_Block), utils.py (GuidedFilter, create_gaussian_kernel), "
        "FNS_Attn/ CUDA kernel (FNS aggregation)"
    ),
    conventions={
        "lr_window": (
            "fine (default): k x k bilinear samples at the half-pixel LR centre (p + 0.5)/s - 0.5 plus "
            "(dy, dx) LR pixels; coarse: the integer k x k LR window centred on floor(p / s)"
        ),
        "border": (
            "FNS coordinates clamped to the LR border (replicate); PCDC, inner-product and Gaussian use "
            "replicate padding; guided filter box sums are zero-padded and divided by the count; "
            "neighbours whose HR position p + s*o leaves the image get -1e7 before the softmax; coarse "
            "taps outside the LR map read 0 (masked anyway)"
        ),
        "align_corners": "False (bilinear upsampling of k, guided-filter coefficients, FNS sampling)",
        "score_window": "k x k on the HR grid at dilation s (PCDC and the mask)",
        "names": "official dim_x = in_channels, dim_y = guide_channels, scale_factor = scale",
    },
    deviations=(
        "FNS is pure PyTorch (folded into a (k+2)x(k+2) reassembly) instead of the CUDA-only FNS_Attn "
        "op; aggregation='triton' runs that reassembly in upbench's fused Triton kernels "
        "(operators/_triton_fns.py; the bilinear fold stays a channel-free PyTorch einsum).",
        "The official FNS CUDA backward drops value gradients at the bottom/right LR border (B3 in "
        "docs/resfu_official.md, where every B id is explained); upbench gradients are exact, so training "
        "differs from the official code there.",
        "The Gaussian kernel is a non-persistent buffer (moves with .to(), cast to the compute dtype) "
        "instead of an attribute created with .cuda() (B1); like the official one it is not in state_dict.",
        "lr_mult is, as in the official module, a gradient hook (grad * lr_mult) on both PCDC blocks' "
        "parameters, GroupNorm included: a true lr_mult x rate under SGD without weight decay, nearly a "
        "no-op under Adam(W) (B7). Like the official hooks they are lost by copy.deepcopy. upbench adds "
        "param_lr_mult, an optimizer param-group learning-rate multiplier on the same parameters.",
        "The scale is used for PCDC dilation, the mask and FNS, and checked against the input shapes; "
        "the official SegFormer config silently builds x2 modules for x4/x8 jumps (B6).",
        "GroupNorm of x and guide uses 32 groups (official mmseg); fewer than 32 channels use one group "
        "per channel (official demo); other non-multiples of 32 use gcd(32, C) (the official errors).",
        "Guided filter, mask and softmax run in at least float32 with autocast off, and the FNS weights "
        "are folded in float32 then cast to x's dtype (official: fp16 mask overflows to -inf, B9; "
        "attn/value dtype mismatch under autocast, B4).",
        "FNS sampling coordinates are exact in float64 (the CUDA kernel "
        "computes them in float32 for every dtype); H = s*h is required (FNS alone would take any size).",
    ),
    notes=(
        "Exact gradients (pure PyTorch autograd); gradcheck-tested in float64.",
        "Ablations: semantic/detail=False replace q_gf/q_gs by the unaligned q; "
        "similarity='inner_product' replaces each PCDC block by the SAPA-style inner product "
        "<centre(p), neighbour(p + s*o)> (no parameters, no scaling); neighbours='coarse' "
        "aggregates the integer LR window at floor(p/s) as SAPA/CARAFE; pcdc_order='v1' swaps "
        "neighbours and centres as in arXiv v1 / code before a6066f1 (docs/resfu_official.md B5).",
        "aggregation='naive' materialises (B, C, k*k, H, W) (grid_sample of all taps); benchmarks only.",
        "Cost is dominated by the two PCDC blocks at HR (128 hidden channels), not the aggregation.",
    ),
)
class ReSFU(Upsampler):
    """ReSFU upsampler: ``op(x, guide)`` with ``x`` (B, C, h, w) and ``guide`` (B, C_g, s*h, s*w).

    Official options keep their official names and defaults (``scale_factor`` is ``scale``,
    ``dim_x`` is ``in_channels``, ``dim_y`` is ``guide_channels``). Ablations default to the paper:

    Args:
        semantic: semantic-aware mutual alignment (guided filter); False uses ``q`` for ``q_gf``.
        detail: detail-aware self-alignment (Gaussian blur); False uses ``q`` for ``q_gs``.
        similarity: ``"pcdc"`` (two PCDC blocks) or ``"inner_product"`` (SAPA-style, no parameters).
        neighbours: ``"fine"`` (FNS, bilinear around the half-pixel LR centre) or ``"coarse"``
            (the integer LR window at ``floor(p / s)``, as SAPA/CARAFE).
        pcdc_order: ``"main"`` (k_up and q_gs are the neighbours) or ``"v1"`` (arXiv v1 order).
        aggregation: ``"auto"`` (chunked everywhere: faster than Triton on an H100), ``"chunked"``
            (never materialises the taps), ``"naive"`` (benchmarks only) or ``"triton"`` (fused
            kernels; CUDA; less memory, slower).
    """

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        groups: PositiveInt = 4,
        kernel_size: OddPositiveInt = 3,
        embedding_dim: PositiveInt = 32,
        y_conv: bool = True,
        qkv_bias: bool = True,
        normx: bool = True,
        normy: bool = True,
        gn_dim: PositiveInt = 8,
        radius: NonNegativeInt = 8,
        eps: PositiveFloat = 1e-3,
        lr_mult: NonNegativeFloat = 1.0,
        param_lr_mult: NonNegativeFloat = 1.0,
        gf_scale: PositiveInt = 2,
        semantic: bool = True,
        detail: bool = True,
        similarity: Literal["pcdc", "inner_product"] = "pcdc",
        neighbours: Literal["fine", "coarse"] = "fine",
        pcdc_order: Literal["main", "v1"] = "main",
        aggregation: Aggregation = "auto",
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        self._check_options(groups, embedding_dim, y_conv, gn_dim)
        check_aggregation("resfu", aggregation)
        self.kernel_size = kernel_size
        self.embedding_dim = embedding_dim
        self.lr_mult = float(lr_mult)
        self.param_lr_mult = float(param_lr_mult)
        self.semantic = semantic
        self.detail = detail
        self.similarity = similarity
        self.neighbours = neighbours
        self.pcdc_order = pcdc_order
        self.aggregation = aggregation
        dim_y = self.guide_channels

        # Registration order follows the official module so state_dict keys come out in its order.
        self.norm_x = nn.GroupNorm(norm_groups(in_channels), in_channels) if normx else None
        self.norm_y = nn.GroupNorm(norm_groups(dim_y), dim_y) if normy else None
        self.GF = GuidedFilter(radius, eps, embedding_dim, scale=gf_scale) if semantic else None
        self.q = nn.Conv2d(dim_y, embedding_dim, 1, bias=qkv_bias) if y_conv else nn.Identity()
        self.k = nn.Conv2d(in_channels, embedding_dim, 1, bias=qkv_bias)
        self.register_buffer("blur_kernel", gaussian_kernel(3).view(1, 1, 3, 3), persistent=False)
        self.semantic_scores: PCDCBlock | None = None
        self.detail_scores: PCDCBlock | None = None
        if similarity == "pcdc":
            block = dict(kernel_size=kernel_size, groups=groups, gn_dim=gn_dim)
            self.semantic_scores = PCDCBlock(embedding_dim, scale, **block)
            self.detail_scores = PCDCBlock(embedding_dim, scale, **block)
        if self.lr_mult != 1.0:  # the official gradient multiplier (B7)
            scale_gradients([self.semantic_scores, self.detail_scores], self.lr_mult)
        for m in self.modules():  # the official _init_weights (after the PCDC blocks' own init)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _check_options(self, groups: int, embedding_dim: int, y_conv: bool, gn_dim: int) -> None:
        """Cross-option checks (each option alone is checked against its annotation)."""
        for name, value in (("groups", groups), ("gn_dim", gn_dim)):
            if embedding_dim % value or PCDC_MID_CHANNELS % value:
                raise InvalidOptionError(
                    f"operator 'resfu': {name}={value} must divide embedding_dim={embedding_dim} and "
                    f"{PCDC_MID_CHANNELS} (the PCDC hidden channels)"
                )
        if not y_conv and self.guide_channels != embedding_dim:
            raise InvalidOptionError(
                f"operator 'resfu': y_conv=False uses the guide as the query, so guide_channels "
                f"({self.guide_channels}) must equal embedding_dim ({embedding_dim})"
            )

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        assert guide is not None  # checked by Upsampler.forward
        x_n = self.norm_x(x) if self.norm_x is not None else x
        y = self.norm_y(guide) if self.norm_y is not None else guide
        q = self.q(y)
        key = self.k(x_n)
        key_up = F.interpolate(key, size=q.shape[-2:], mode="bilinear", align_corners=False)
        q_gs = self._blur(q) if self.detail else q
        q_gf = self.GF(q, key_up) if self.GF is not None else q
        sem_pair, det_pair = (key_up, q_gf), (q_gs, q)  # (neighbours, centres), current main
        if self.pcdc_order == "v1":
            sem_pair, det_pair = sem_pair[::-1], det_pair[::-1]
        if self.similarity == "pcdc":
            scores = self.semantic_scores(*sem_pair) + self.detail_scores(*det_pair)
        else:
            k, s = self.kernel_size, self.scale
            scores = dilated_inner_product(*sem_pair, k, s) + dilated_inner_product(*det_pair, k, s)
        return self._aggregate(x, self._attention(scores))

    def _blur(self, q: Tensor) -> Tensor:
        """Depthwise 3x3 Gaussian with replicate padding (detail-aware self-alignment)."""
        kernel = self.blur_kernel.to(q.dtype).expand(q.shape[1], 1, 3, 3)
        return F.conv2d(F.pad(q, (1, 1, 1, 1), mode="replicate"), kernel, groups=q.shape[1])

    def _attention(self, scores: Tensor) -> Tensor:
        """Masked softmax over the ``k*k`` neighbours, in at least float32 with autocast off."""
        work = torch.promote_types(scores.dtype, torch.float32)
        height, width = scores.shape[-2:]
        with torch.autocast(device_type=scores.device.type, enabled=False):
            mask = border_mask(height, width, self.kernel_size, self.scale, dtype=work, device=scores.device)
            return torch.softmax(scores.to(work) + mask, dim=1)

    def _aggregate(self, x: Tensor, attn: Tensor) -> Tensor:
        k, s = self.kernel_size, self.scale
        if self.neighbours == "fine":
            return fns_aggregation(self.aggregation, x)(x, attn, k, s)
        return reassembly(self.aggregation, x)(x, attn, k, s, padding_mode="zeros")

    def param_groups(self) -> list[dict[str, Any]]:
        """Two groups: the PCDC blocks (GroupNorm included) with ``param_lr_mult``, the rest with 1.

        (``lr_mult``, the official option, scales these blocks' gradients instead; see the deviations.)
        """
        blocks = [m for m in (self.semantic_scores, self.detail_scores) if m is not None]
        boosted = [p for m in blocks for p in m.parameters() if p.requires_grad]
        ids = {id(p) for p in boosted}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "lr_mult": 1.0}, {"params": boosted, "lr_mult": self.param_lr_mult}]
        return [g for g in groups if g["params"]]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}, embedding_dim={self.embedding_dim}"
