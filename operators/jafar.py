"""JAFAR: Jack up Any Feature at Any Resolution (Couairon, Chambon et al., arXiv:2506.11136).

Official code: PaulCouairon/JAFAR ``src/upsampler/jafar.py`` (class ``JAFAR``) with its layers
``src/layers/{attentions,convolutions,other,positional_encoding}.py`` and ``config/model/jafar.yaml``
(``input_dim=3, qk_dim=128, kernel_size=1, num_heads=4``, ``v_dim`` = the backbone's dimension).

Method. The image is encoded at its own resolution (``image_encoder``: a conv ``3 -> qk_dim`` and two
1x1 ``ResBlock`` s with GroupNorm(8) and SiLU) and rotated by a 2-D RoPE on the ``[0, 1]^2`` pixel grid
(``rope.freqs`` learnable). Queries: ``query_encoder`` of it, average-pooled to the output size,
GroupNorm without affine. Keys: ``key_encoder`` of it, average-pooled to the LR size, modulated by the
features (SFT: ``gamma(f) * GroupNorm(keys) + beta(f)`` with ``f = key_features_encoder(normalize(x))``).
Then ``cross_decode``: a 3x3 conv on the queries, RMSNorm of queries and keys, the head-averaged softmax
attention weights of ``nn.MultiheadAttention`` (``q_proj``/``k_proj`` with bias, scale
``1/sqrt(qk_dim/num_heads)``), and the output is those weights applied to the *raw* LR features ``x``.

Here. The attention weights are computed directly (same projections, scale and head average) in chunks
of query pixels, so the ``(B, heads, H*W, h*w)`` score tensor of the official ``need_weights=True`` call is
never materialised whole. Parameter names are the official ones (the ``nn.MultiheadAttention`` is kept
as the parameter container), so JAFAR checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import OddPositiveInt, PositiveInt
from upbench_operators._vfm import DEFAULT_CHUNK_ELEMENTS, RoPE, averaged_attention, check_qk_heads


class ResBlock(nn.Module):
    """JAFAR's ``ResBlock`` (from magvit): GroupNorm, SiLU, conv, GroupNorm, SiLU, conv, plus the input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, num_groups: int = 8) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.activation_fn = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.activation_fn(self.norm1(x)))
        return self.conv2(self.activation_fn(self.norm2(out))) + x


def make_encoder(in_dim: int, qk_dim: int, kernel_size: int, num_layers: int = 2) -> nn.Sequential:
    """A conv ``in_dim -> qk_dim`` (reflect padding, no bias) and ``num_layers`` 1x1 ResBlocks."""
    conv = nn.Conv2d(in_dim, qk_dim, kernel_size, padding=kernel_size // 2, padding_mode="reflect", bias=False)
    return nn.Sequential(conv, *[ResBlock(qk_dim, qk_dim) for _ in range(num_layers)])


class SFTModulation(nn.Module):
    """``gamma(features) * GroupNorm(image) + beta(features)`` (1x1 convs, GroupNorm(8) without affine)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.gamma = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.beta = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.GroupNorm(num_groups=8, num_channels=in_channels, affine=False)

    def forward(self, image: Tensor, features: Tensor) -> Tensor:
        return self.gamma(features) * self.norm(image) + self.beta(features)


class CrossAttention(nn.Module):
    """Head-averaged attention weights of ``nn.MultiheadAttention`` applied to the raw values."""

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm_q = nn.RMSNorm(query_dim)
        self.norm_k = nn.RMSNorm(key_dim)
        self.norm_v = nn.RMSNorm(value_dim)
        self.attention = nn.MultiheadAttention(
            embed_dim=query_dim, vdim=value_dim, num_heads=num_heads, dropout=0.0, batch_first=True
        )
        # They only feed the attention output that JAFAR discards: kept for the state dict, frozen.
        unused = [self.norm_v.weight, self.attention.out_proj.weight, self.attention.out_proj.bias]
        unused += [self.attention.v_proj_weight] if self.attention.v_proj_weight is not None else []
        for p in unused:
            p.requires_grad_(False)

    def projections(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(W_q, b_q, W_k, b_k)`` of the attention (packed or separate projection weights)."""
        att, e = self.attention, self.attention.embed_dim
        if att.in_proj_weight is not None:
            w_q, w_k = att.in_proj_weight[:e], att.in_proj_weight[e : 2 * e]
        else:
            w_q, w_k = att.q_proj_weight, att.k_proj_weight
        return w_q, att.in_proj_bias[:e], w_k, att.in_proj_bias[e : 2 * e]

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
    ) -> Tensor:
        """``query (B, N, E)``, ``key (B, M, E)``, ``value (B, M, C)`` -> ``(B, N, C)``."""
        w_q, b_q, w_k, b_k = self.projections()
        q = F.linear(self.norm_q(query), w_q, b_q)
        k = F.linear(self.norm_k(key), w_k, b_k)
        return averaged_attention(q, k, value, self.attention.num_heads, chunk_elements=chunk_elements)


class CrossAttentionBlock(nn.Module):
    """A 3x3 conv on the queries, then :class:`CrossAttention` on flattened maps."""

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, num_heads: int) -> None:
        super().__init__()
        self.cross_attn = CrossAttention(query_dim, key_dim, value_dim, num_heads)
        self.conv2d = nn.Conv2d(query_dim, query_dim, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, _, big_h, big_w = q.shape
        flat = lambda t: t.flatten(2).transpose(1, 2)  # noqa: E731  (B, C, H, W) -> (B, H*W, C)
        out = self.cross_attn(flat(self.conv2d(q)), flat(k), flat(v))
        return out.transpose(1, 2).reshape(b, v.shape[1], big_h, big_w)


@register_operator(
    "jafar",
    title="JAFAR",
    guided=True,
    paper="arXiv:2506.11136",
    scales=None,
    any_size=True,
    family="task-agnostic",
    code="PaulCouairon/JAFAR@94d4d54 src/upsampler/jafar.py JAFAR (+ src/layers/*.py, config/model/jafar.yaml)",
    conventions={
        "guide": "the RGB image (normalised as the backbone's input) at the output size; guide_channels=3",
        "queries": "image encoding average-pooled to the output size (any size)",
        "keys": "image encoding average-pooled to the LR size, SFT-modulated by the L2-normalised features",
        "values": "the raw LR features x (global attention over all LR pixels)",
        "positions": "2-D RoPE on linspace(0, 1) rows and columns of the guide, theta=100",
    },
    deviations=(
        "The head-averaged attention weights are computed in chunks of query pixels (same projections, scale "
        "1/sqrt(qk_dim/num_heads) and head average as nn.MultiheadAttention(need_weights=True)); the softmax "
        "runs in the query dtype, as the official.",
        "norm_v, attention.v_proj_weight and attention.out_proj only feed the MultiheadAttention output that "
        "JAFAR discards; they are kept (for strict loading) but frozen (requires_grad=False).",
        "guide_channels (JAFAR's input_dim) defaults to 3; in_channels is JAFAR's v_dim.",
    ),
    notes=(
        "Official checkpoints (per backbone, GitHub releases of PaulCouairon/JAFAR) load with "
        "load_state_dict(strict=True) into jafar built with in_channels = the backbone's dimension.",
        "Cost grows with (output pixels) x (LR pixels): global attention, no window.",
        "Licence of the official code: Apache-2.0.",
    ),
)
class JAFAR(Upsampler):
    """JAFAR with the official submodule names (``image_encoder``, ..., ``cross_decode``, ``rope``)."""

    default_guide_channels = 3  # guided by the RGB image, as in its paper

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        qk_dim: PositiveInt = 128,
        kernel_size: OddPositiveInt = 1,
        num_heads: PositiveInt = 4,
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        check_qk_heads("jafar", qk_dim, num_heads)
        self.qk_dim, self.kernel_size, self.num_heads = qk_dim, kernel_size, num_heads
        self.image_encoder = make_encoder(self.guide_channels, qk_dim, kernel_size)
        self.key_encoder = make_encoder(qk_dim, qk_dim, 1)
        self.query_encoder = make_encoder(qk_dim, qk_dim, 1)
        self.norm = nn.GroupNorm(num_groups=8, num_channels=qk_dim, affine=False)
        self.key_features_encoder = make_encoder(in_channels, qk_dim, 1)
        self.cross_decode = CrossAttentionBlock(qk_dim, qk_dim, in_channels, num_heads)
        self.sft_key = SFTModulation(qk_dim, qk_dim)
        self.rope = RoPE(qk_dim)

    def upsample(self, x: Tensor, guide: Tensor, size: tuple[int, int]) -> Tensor:
        encoded_image = self.rope(self.image_encoder(guide.to(x.dtype)))
        queries = self.norm(F.adaptive_avg_pool2d(self.query_encoder(encoded_image), size))
        keys = F.adaptive_avg_pool2d(self.key_encoder(encoded_image), tuple(x.shape[-2:]))
        keys = self.sft_key(keys, self.key_features_encoder(F.normalize(x, dim=1)))
        return self.cross_decode(queries, keys, x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, qk_dim={self.qk_dim}, num_heads={self.num_heads}"
