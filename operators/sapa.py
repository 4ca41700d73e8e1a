"""SAPA: similarity-aware point affiliation (Lu et al., NeurIPS 2022; extension arXiv:2307.08198).

Every HR pixel ``p`` attends to the ``k x k`` LR window centred on ``floor(p / s)``:

    out[:, p] = sum_n softmax_n( q(p) . key(floor(p/s) + n) ) * x(floor(p/s) + n)

with the query ``q`` from the HR guide (encoder feature), the key from the LR feature and the
value the **raw** LR feature ``x``. Out-of-image taps score 0 and still take part in the softmax,
and their value is 0, so borders are attenuated (as the official CUDA ``qk``/``av`` kernels).
There is no temperature. Three variants are registered:

* ``sapa`` (alias ``sapa_b``), SAPA-B: GroupNorm(32) on x and guide, 1x1 convs to a 32-d
  embedding; mirrors ``tiny-smart/sapa`` ``sapa_base.py``, the SAPA that the shared
  ``build_upsampler`` of ``tiny-smart/segmentation-with-upsamplers`` builds. ``sapa`` is the
  canonical name because suites and the peers' tables call SAPA-B simply "SAPA".
* ``sapa_g``, SAPA-G: gated query ``g * W_y LN(y) + (1 - g) * W_x NN(x)``, ``g = NN(sigmoid(W_g LN(x)))``;
  mirrors ``poppinace/sapa`` ``SAPAExp(q_mode='gate')`` (LayerNorm, ``nn.Linear`` layers).
* ``sapa_i``, SAPA-I: inner product of the normalised features, no parameters (no official code).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import OddPositiveInt, PositiveInt
from upbench_operators._aggregation import Aggregation, check_aggregation, softmax_reassemble
from upbench_operators._window_similarity import window_similarity, window_similarity_naive

_PAPER = "NeurIPS 2022, arXiv:2209.12866; extension arXiv:2307.08198"
_CONVENTIONS = {
    "lr_window": "integer k x k LR window centred on floor(p/s) (k = up_kernel_size = 5)",
    "border": "out-of-image taps: key 0 so score 0, kept in the softmax; value 0 (borders attenuated)",
    "align_corners": "not applicable (integer window, no interpolation)",
    "softmax": "over the k*k taps, no temperature; computed in float32 for float16/bfloat16",
    "value": "the raw LR feature x (not normalised, not projected)",
}
_COMMON_NOTES = (
    "Pure PyTorch (the official code is a CUDA-only extension): scores are one batched matmul per LR "
    "cell (operators/_window_similarity.py) and aggregation is operators/_reassembly.py, so no "
    "(B, C, k*k, H, W) tensor is built; gradients are exact autograd gradients. "
    "aggregation='triton' runs the softmax and the aggregation in upbench's fused Triton kernels "
    "(operators/_triton_reassembly.py); the scores stay in PyTorch.",
    "aggregation='naive' switches both steps to the unfold formulation that materialises "
    "(B, C, k*k, H, W); it exists only as the memory/time baseline of the benchmark script.",
    "Any integer scale: the official kernels take any integer up_factor and require the guide to be "
    "exactly s*h x s*w, as upbench's interface does.",
)


def group_norm_groups(channels: int, groups: int = 32) -> int:
    """``groups`` if it divides ``channels`` (the official GroupNorm(32)), else ``gcd(channels, groups)``."""
    return groups if channels % groups == 0 else math.gcd(channels, groups)


def _layer_norm_cf(t: Tensor, norm: nn.LayerNorm | None = None) -> Tensor:
    """LayerNorm over the channels of a channels-first map (``norm=None``: no affine parameters)."""
    t = t.permute(0, 2, 3, 1)
    if norm is None:
        t = F.layer_norm(t, t.shape[-1:])
    else:
        t = norm(t)
    return t.permute(0, 3, 1, 2)


def _linear_cf(linear: nn.Linear, t: Tensor) -> Tensor:
    """Apply an ``nn.Linear`` over the channels of a channels-first map (as a 1x1 convolution)."""
    return F.conv2d(t, linear.weight[:, :, None, None], linear.bias)


def _nearest(t: Tensor, scale: int) -> Tensor:
    """Nearest-neighbour upsampling by an integer factor (every LR pixel copied to its s x s cell)."""
    return F.interpolate(t, scale_factor=scale, mode="nearest")


class _SAPABase(Upsampler):
    """Shared attention step: window softmax of query-key scores, then reassembly of the raw ``x``."""

    def _setup(self, up_kernel_size: int, aggregation: Aggregation) -> None:
        check_aggregation(type(self).info.name, aggregation)  # 'triton' needs the package
        self.up_kernel_size = up_kernel_size
        self.aggregation = aggregation

    def attend(self, query: Tensor, key: Tensor, x: Tensor) -> Tensor:
        """``sum_n softmax_n(query . key_n) x_n`` over the LR window of every HR pixel, in ``x.dtype``."""
        k, s = self.up_kernel_size, self.scale
        naive = self.aggregation == "naive"
        scores = (window_similarity_naive if naive else window_similarity)(query, key, k, s)
        return softmax_reassemble(self.aggregation, x, scores, k, s)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, up_kernel_size={self.up_kernel_size}, aggregation={self.aggregation!r}"


@register_operator(
    "sapa",
    title="SAPA-B",
    guided=True,
    guide_passthrough=False,
    paper=_PAPER,
    scales=None,
    code=(
        "tiny-smart/sapa@a5acd52 sapa_base.py class SAPA (qk/av CUDA kernels in sapa/sapa/src/cuda), "
        "built with the defaults of tiny-smart/segmentation-with-upsamplers@3ae9265 "
        "mmseg/models/upsamplers/build_upsampler.py"
    ),
    conventions={**_CONVENTIONS, "normalisation": "GroupNorm(32) on x (keys) and guide (queries)"},
    deviations=(
        "GroupNorm uses gcd(channels, 32) groups when 32 does not divide the channel count (the official "
        "nn.GroupNorm(32, C) raises there); identical wherever the official code runs.",
        "Pure-PyTorch forward/backward instead of the official CUDA extension (equal up to float rounding).",
    ),
    notes=(
        "Defaults as the shared build_upsampler: up_kernel_size=5, embedding_dim=32, qkv_bias=True, "
        "norm=True (17,472 parameters at C=256). The NeurIPS SAPA.py uses LayerNorm and nn.Linear with "
        "embedding_dim=64 by default; its official SegFormer logs train with embedding_dim=32.",
        "'sapa' is SAPA-B; 'sapa_b' is an alias of the same operator.",
        *_COMMON_NOTES,
    ),
    aliases=("sapa_b",),
)
class SAPA(_SAPABase):
    """SAPA-B: GroupNorm'd guide and x projected by 1x1 convs to an ``embedding_dim`` query/key.

    Parameters mirror ``tiny-smart/sapa`` ``SAPA``: ``norm_y``/``norm_x`` (GroupNorm, only with
    ``norm=True``), ``q`` (Conv2d ``C_g -> E``) and ``k`` (Conv2d ``C -> E``).
    """

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        up_kernel_size: OddPositiveInt = 5,
        embedding_dim: PositiveInt = 32,
        qkv_bias: bool = True,
        norm: bool = True,
        aggregation: Aggregation = "auto",
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        self._setup(up_kernel_size, aggregation)
        cg = self.guide_channels
        self.embedding_dim = embedding_dim
        self.norm = norm
        if norm:
            self.norm_y = nn.GroupNorm(group_norm_groups(cg), cg)
            self.norm_x = nn.GroupNorm(group_norm_groups(in_channels), in_channels)
        self.q = nn.Conv2d(cg, embedding_dim, kernel_size=1, bias=qkv_bias)
        self.k = nn.Conv2d(in_channels, embedding_dim, kernel_size=1, bias=qkv_bias)
        for conv in (self.q, self.k):
            nn.init.normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        y, x_ = (self.norm_y(guide), self.norm_x(x)) if self.norm else (guide, x)
        return self.attend(self.q(y), self.k(x_), x)


@register_operator(
    "sapa_g",
    title="SAPA-G",
    guided=True,
    guide_passthrough=False,
    paper=_PAPER,
    scales=None,
    code="poppinace/sapa@5530ef8 SAPAExp.py class SAPAExp(q_mode='gate') (sim/atn CUDA kernels in sapa/)",
    conventions={
        **_CONVENTIONS,
        "normalisation": "LayerNorm over channels on x (keys, gate) and guide (queries)",
    },
    deviations=(
        "embedding_dim defaults to 32, the value of the official SAPA-G SegFormer run "
        "(poppinace/sapa segformer/20231124_100502.log, q_mode='gate', embedding_dim=32); the SAPAExp "
        "constructor default is 64.",
        "Pure-PyTorch forward/backward instead of the official CUDA extension (equal up to float rounding).",
    ),
    notes=(
        "W_x is applied to the LR x before the nearest upsampling (the official applies it after); a 1x1 "
        "projection commutes with nearest upsampling, so the result is identical and the cost s*s times "
        "lower (fvcore counts differ from the official layout accordingly).",
        *_COMMON_NOTES,
    ),
)
class SAPAG(_SAPABase):
    """SAPA-G: the query gates between the projected guide and the projected, upsampled ``x``.

    Parameters mirror ``poppinace/sapa`` ``SAPAExp(q_mode='gate')``: ``norm_y``/``norm_x``
    (LayerNorm), ``qy`` (Linear ``C_g -> E``), ``qx`` and ``k`` (Linear ``C -> E``), ``gate``
    (Linear ``C -> 1``).
    """

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        up_kernel_size: OddPositiveInt = 5,
        embedding_dim: PositiveInt = 32,
        qkv_bias: bool = True,
        aggregation: Aggregation = "auto",
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        self._setup(up_kernel_size, aggregation)
        cg = self.guide_channels
        self.embedding_dim = embedding_dim
        self.norm_y = nn.LayerNorm(cg)
        self.norm_x = nn.LayerNorm(in_channels)
        self.qy = nn.Linear(cg, embedding_dim, bias=qkv_bias)
        self.qx = nn.Linear(in_channels, embedding_dim, bias=qkv_bias)
        self.gate = nn.Linear(in_channels, 1, bias=qkv_bias)
        self.k = nn.Linear(in_channels, embedding_dim, bias=qkv_bias)
        for linear in (self.qy, self.qx, self.gate, self.k):
            nn.init.trunc_normal_(linear.weight, std=0.02, a=-2.0, b=2.0)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        s = self.scale
        y = _layer_norm_cf(guide, self.norm_y)
        x_ = _layer_norm_cf(x, self.norm_x)
        gate = _nearest(torch.sigmoid(_linear_cf(self.gate, x_)), s)
        query = gate * _linear_cf(self.qy, y) + (1 - gate) * _nearest(_linear_cf(self.qx, x), s)
        return self.attend(query, _linear_cf(self.k, x_), x)


@register_operator(
    "sapa_i",
    title="SAPA-I",
    guided=True,
    guide_passthrough=False,
    learnable=False,
    paper=_PAPER,
    scales=None,
    code=(
        "no official code for SAPA-I; built from the paper's inner-product similarity with the "
        "normalisation of poppinace/sapa@5530ef8 SAPA.py (LayerNorm) and its sim/atn kernel conventions"
    ),
    conventions={**_CONVENTIONS, "normalisation": "LayerNorm over channels without affine parameters"},
    deviations=(
        "The normalisation is an inference: the README lists SAPA-I with +0 parameters, so upbench uses "
        "LayerNorm without affine parameters on both features (norm=False: raw features).",
        "Where guide_channels != in_channels (the paper needs them equal) a 1x1 conv 'aligner' maps the "
        "guide to in_channels first; it is upbench's generalisation and the only parameters SAPA-I can have.",
        "Pure PyTorch; the official SAPA code is a CUDA-only extension.",
    ),
    notes=_COMMON_NOTES,
)
class SAPAI(_SAPABase):
    """SAPA-I: softmax of the inner products between the normalised guide and normalised ``x``."""

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        up_kernel_size: OddPositiveInt = 5,
        norm: bool = True,
        aggregation: Aggregation = "auto",
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        self._setup(up_kernel_size, aggregation)
        self.norm = norm
        cg = self.guide_channels
        self.aligner = nn.Conv2d(cg, in_channels, kernel_size=1) if cg != in_channels else None

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        y = guide if self.aligner is None else self.aligner(guide)
        if self.norm:
            y, x_ = _layer_norm_cf(y), _layer_norm_cf(x)
        else:
            x_ = x
        return self.attend(y, x_, x)
