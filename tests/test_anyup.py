"""AnyUp: float64 reference written as the official forward (nn.MultiheadAttention with AnyUp's window mask
built from its definition, LFU channel by channel), the window itself, and AnyUp's key list."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import upbench
from upbench_operators._vfm import averaged_attention
from upbench_operators.anyup import window_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def _encoder_keys(prefix: str, first: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.0.{k}": v for k, v in first.items()}
    for block in (1, 2):
        p = f"{prefix}.{block}.block"
        keys |= {f"{p}.0.weight": (128,), f"{p}.0.bias": (128,), f"{p}.2.weight": (128, 128, 1, 1)}
        keys |= {f"{p}.3.weight": (128,), f"{p}.3.bias": (128,), f"{p}.5.weight": (128, 128, 1, 1)}
    return keys


#: ``AnyUp()`` (hubconf.anyup, config/model/anyup.yaml) in wimmerth/anyup@351807a, written out from
#: anyup/model.py and anyup/layers/*; the same for every feature dimension.
OFFICIAL_KEYS = {
    **_encoder_keys("image_encoder", {"weight": (128, 3, 1, 1)}),
    **_encoder_keys("key_encoder", {"weight": (128, 128, 1, 1)}),
    **_encoder_keys("query_encoder", {"weight": (128, 128, 1, 1)}),
    **_encoder_keys("key_features_encoder", {"basis": (128, 1, 5, 5)}),
    "cross_decode.cross_attn.norm_q.weight": (128,),
    "cross_decode.cross_attn.norm_k.weight": (128,),
    "cross_decode.cross_attn.attention.in_proj_weight": (384, 128),
    "cross_decode.cross_attn.attention.in_proj_bias": (384,),
    "cross_decode.cross_attn.attention.out_proj.weight": (128, 128),
    "cross_decode.cross_attn.attention.out_proj.bias": (128,),
    "cross_decode.conv2d.weight": (128, 128, 3, 3),
    **_encoder_keys("aggregation", {"weight": (128, 256, 3, 3)}),
    "rope.freqs": (2, 128),
}


def mask_reference(high: tuple[int, int], low: tuple[int, int], ratio: float) -> torch.Tensor:
    """AnyUp's window: True where blocked; float32 centres, clamp to [0, 1], floor/ceil on the LR grid."""
    (hh, hw), (lh, lw) = high, low
    blocked = torch.ones(hh * hw, lh * lw, dtype=torch.bool)
    r = torch.tensor(ratio, dtype=torch.float32)
    for i in range(hh):
        pr = (torch.tensor(i, dtype=torch.float32) + 0.5) / hh
        r0, r1 = int(torch.floor((pr - r).clamp(0, 1) * lh)), int(torch.ceil((pr + r).clamp(0, 1) * lh))
        for j in range(hw):
            pc = (torch.tensor(j, dtype=torch.float32) + 0.5) / hw
            c0, c1 = int(torch.floor((pc - r).clamp(0, 1) * lw)), int(torch.ceil((pc + r).clamp(0, 1) * lw))
            for a in range(r0, r1):
                for b in range(c0, c1):
                    blocked[i * hw + j, a * lw + b] = False
    return blocked


def _lfu_reference(lfu, feats: torch.Tensor) -> torch.Tensor:
    b, c, h, w = feats.shape
    k = lfu.kernel_size
    count = F.conv2d(
        torch.ones(1, 1, h, w, dtype=feats.dtype), torch.ones(1, 1, k, k, dtype=feats.dtype), padding=k // 2
    )
    flat = torch.cat(
        [
            F.conv2d(feats[:, ci : ci + 1], lfu.basis[o : o + 1], padding=k // 2) / count
            for ci in range(c)
            for o in range(lfu.out_channels)
        ],
        dim=1,
    )  # channel ci*out + o, as the official grouped conv
    return flat.view(b, lfu.out_channels, c, h, w).softmax(dim=1).mean(dim=2)


def _rope_reference(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x.shape
    rows = torch.linspace(0, 1, h, dtype=x.dtype).view(h, 1).expand(h, w)
    cols = torch.linspace(0, 1, w, dtype=x.dtype).view(1, w).expand(h, w)
    angle = rows[None] * freqs[0].view(c, 1, 1) + cols[None] * freqs[1].view(c, 1, 1)
    rotated = torch.cat([-x[:, c // 2 :], x[:, : c // 2]], dim=1)
    return x * angle.cos() + rotated * angle.sin()


def anyup_reference(op, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    size = tuple(image.shape[-2:])
    with torch.no_grad():
        enc = _rope_reference(op.image_encoder(image), op.rope.freqs)
        q = F.adaptive_avg_pool2d(op.query_encoder(enc), size)
        k = F.adaptive_avg_pool2d(op.key_encoder(enc), x.shape[-2:])
        lfu = op.key_features_encoder
        unified = lfu[2](lfu[1](_lfu_reference(lfu[0], x / x.norm(dim=1, keepdim=True).clamp(min=1e-12))))
        k = op.aggregation(torch.cat([k, unified], dim=1))
        block = op.cross_decode
        q = block.conv2d(q).flatten(2).transpose(1, 2)
        k = k.flatten(2).transpose(1, 2)
        v = x.flatten(2).transpose(1, 2)
        mask = mask_reference(size, tuple(x.shape[-2:]), block.window_ratio)
        attn = block.cross_attn
        _, weights = attn.attention(attn.norm_q(q), attn.norm_k(k), k, attn_mask=mask, average_attn_weights=True)
        out = torch.einsum("bij,bjd->bid", weights, v)
    return out.transpose(1, 2).reshape(x.shape[0], x.shape[1], *size)


def _randomise(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.2)


@pytest.mark.parametrize(("lr", "hr", "ratio"), [((4, 5), (8, 10), 0.1), ((3, 4), (7, 9), 0.3)], ids=["x2", "any-size"])
def test_matches_the_official_forward_in_float64(lr, hr, ratio) -> None:
    torch.manual_seed(0)
    op = upbench.create_operator("anyup", 6, 2, qk_dim=16, num_heads=2, kernel_size_lfu=3, window_ratio=ratio)
    op = op.double().eval()
    _randomise(op)
    x = torch.randn(2, 6, *lr, dtype=torch.float64)
    image = torch.randn(2, 3, *hr, dtype=torch.float64)
    torch.testing.assert_close(op(x, image), anyup_reference(op, x, image), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("high", "low", "ratio"), [((14, 14), (4, 4), 0.1), ((9, 13), (3, 5), 0.25), ((5, 5), (5, 5), 0.0)]
)
def test_window_mask_matches_its_definition(high, low, ratio) -> None:
    mask = window_mask(high, low, ratio)
    assert torch.equal(mask, mask_reference(high, low, ratio))
    assert not mask.all(dim=1).any()  # every query sees at least one LR pixel


def test_masked_chunked_attention_equals_dense() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, c, generator=g, dtype=torch.float64) for n, c in ((20, 8), (6, 8), (6, 3)))
    mask = window_mask((4, 5), (2, 3), 0.2)
    dense_scores = (q.view(2, 20, 2, 4).transpose(1, 2) @ k.view(2, 6, 2, 4).permute(0, 2, 3, 1)) / 2
    dense = dense_scores.masked_fill(mask, -math.inf).softmax(-1).mean(1) @ v
    torch.testing.assert_close(averaged_attention(q, k, v, 2, mask=mask, chunk_elements=30), dense)


def test_official_key_list_loads_strictly_for_any_feature_dimension() -> None:
    for channels in (384, 768):
        op = upbench.create_operator("anyup", channels, 16)
        assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == OFFICIAL_KEYS
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=g) for k, shape in OFFICIAL_KEYS.items()}
    op.load_state_dict(official, strict=True)
    frozen = {n for n, p in op.named_parameters() if not p.requires_grad}
    assert frozen == {
        "cross_decode.cross_attn.attention.out_proj.weight",
        "cross_decode.cross_attn.attention.out_proj.bias",
    }


def test_too_small_lr_map_is_rejected_in_one_line() -> None:
    op = upbench.create_operator("anyup", 4, 2)
    with pytest.raises(upbench.InputShapeError, match="at least 2x2"):
        op(torch.randn(1, 4, 1, 3), torch.randn(1, 3, 2, 6))
