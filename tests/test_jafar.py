"""JAFAR: float64 reference written as the official forward (nn.MultiheadAttention weights, RoPE by loops),
chunked attention, frozen unused parameters and JAFAR's key list."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import upbench

pytestmark = pytest.mark.usefixtures("one_thread")


def _encoder_keys(prefix: str, in_dim: int, kernel: int = 1) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.0.weight": (128, in_dim, kernel, kernel)}
    for block in (1, 2):
        for norm in ("norm1", "norm2"):
            keys |= {f"{prefix}.{block}.{norm}.weight": (128,), f"{prefix}.{block}.{norm}.bias": (128,)}
        keys |= {f"{prefix}.{block}.conv1.weight": (128, 128, 1, 1), f"{prefix}.{block}.conv2.weight": (128, 128, 1, 1)}
    return keys


#: ``JAFAR(input_dim=3, qk_dim=128, v_dim=384, kernel_size=1, num_heads=4)`` (config/model/jafar.yaml) in
#: PaulCouairon/JAFAR@94d4d54, written out from src/upsampler/jafar.py and src/layers/*.py.
OFFICIAL_KEYS = {
    **_encoder_keys("image_encoder", 3),
    **_encoder_keys("key_encoder", 128),
    **_encoder_keys("query_encoder", 128),
    **_encoder_keys("key_features_encoder", 384),
    "cross_decode.cross_attn.norm_q.weight": (128,),
    "cross_decode.cross_attn.norm_k.weight": (128,),
    "cross_decode.cross_attn.norm_v.weight": (384,),
    "cross_decode.cross_attn.attention.q_proj_weight": (128, 128),
    "cross_decode.cross_attn.attention.k_proj_weight": (128, 128),
    "cross_decode.cross_attn.attention.v_proj_weight": (128, 384),
    "cross_decode.cross_attn.attention.in_proj_bias": (384,),
    "cross_decode.cross_attn.attention.out_proj.weight": (128, 128),
    "cross_decode.cross_attn.attention.out_proj.bias": (128,),
    "cross_decode.conv2d.weight": (128, 128, 3, 3),
    "sft_key.gamma.weight": (128, 128, 1, 1),
    "sft_key.beta.weight": (128, 128, 1, 1),
    "rope.freqs": (2, 128),
}


def _rope_reference(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x.shape
    out = torch.empty_like(x)
    half = c // 2
    for i in range(h):
        for j in range(w):
            r, s = (i / (h - 1) if h > 1 else 0.0), (j / (w - 1) if w > 1 else 0.0)
            angle = r * freqs[0] + s * freqs[1]
            v = x[:, :, i, j]
            rotated = torch.cat([-v[:, half:], v[:, :half]], dim=1)
            out[:, :, i, j] = v * angle.cos() + rotated * angle.sin()
    return out


def jafar_reference(op, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The official JAFAR.forward with the attention weights from nn.MultiheadAttention(need_weights=True)."""
    size = image.shape[-2:]
    with torch.no_grad():
        encoded = _rope_reference(op.image_encoder(image), op.rope.freqs)
        queries = F.group_norm(F.adaptive_avg_pool2d(op.query_encoder(encoded), size), 8)
        keys = F.adaptive_avg_pool2d(op.key_encoder(encoded), x.shape[-2:])
        feats = op.key_features_encoder(x / x.norm(dim=1, keepdim=True).clamp(min=1e-12))
        keys = op.sft_key.gamma(feats) * F.group_norm(keys, 8) + op.sft_key.beta(feats)
        block = op.cross_decode
        q = block.conv2d(queries).flatten(2).transpose(1, 2)
        k, v = keys.flatten(2).transpose(1, 2), x.flatten(2).transpose(1, 2)
        attn = block.cross_attn
        _, weights = attn.attention(attn.norm_q(q), attn.norm_k(k), attn.norm_v(v), average_attn_weights=True)
        out = torch.einsum("bij,bjd->bid", weights, v)
    return out.transpose(1, 2).reshape(x.shape[0], x.shape[1], *size)


def _randomise(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.2)


@pytest.mark.parametrize(
    ("channels", "lr", "hr"), [(24, (3, 4), (6, 8)), (16, (3, 3), (7, 5))], ids=["separate-proj", "any-size"]
)
def test_matches_the_official_forward_in_float64(channels: int, lr: tuple[int, int], hr: tuple[int, int]) -> None:
    torch.manual_seed(0)
    op = upbench.create_operator("jafar", channels, 2, qk_dim=16, num_heads=2).double().eval()
    _randomise(op)
    x = torch.randn(2, channels, *lr, dtype=torch.float64)
    image = torch.randn(2, 3, *hr, dtype=torch.float64)
    torch.testing.assert_close(op(x, image), jafar_reference(op, x, image), rtol=1e-10, atol=1e-10)


def test_packed_projection_when_features_have_qk_dim_channels() -> None:
    """in_channels == qk_dim: nn.MultiheadAttention packs q/k/v into in_proj_weight, as in JAFAR."""
    torch.manual_seed(0)
    op = upbench.create_operator("jafar", 16, 2, qk_dim=16, num_heads=4).double().eval()
    assert op.cross_decode.cross_attn.attention.in_proj_weight is not None
    _randomise(op)
    x, image = torch.randn(1, 16, 3, 3, dtype=torch.float64), torch.randn(1, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(op(x, image), jafar_reference(op, x, image), rtol=1e-10, atol=1e-10)


def test_chunked_attention_equals_one_chunk() -> None:
    torch.manual_seed(0)
    attn = upbench.create_operator("jafar", 8, 2, qk_dim=16).cross_decode.cross_attn.double()
    q, k, v = (torch.randn(2, n, c, dtype=torch.float64) for n, c in ((30, 16), (7, 16), (7, 8)))
    torch.testing.assert_close(attn(q, k, v, chunk_elements=50), attn(q, k, v), rtol=1e-12, atol=1e-12)


def test_official_key_list_loads_strictly_and_unused_parameters_are_frozen() -> None:
    op = upbench.create_operator("jafar", 384, 16)
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == OFFICIAL_KEYS
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=g) for k, shape in OFFICIAL_KEYS.items()}
    op.load_state_dict(official, strict=True)
    assert torch.equal(op.rope.freqs, official["rope.freqs"])
    frozen = {n for n, p in op.named_parameters() if not p.requires_grad}
    assert frozen == {
        "cross_decode.cross_attn.norm_v.weight",
        "cross_decode.cross_attn.attention.v_proj_weight",
        "cross_decode.cross_attn.attention.out_proj.weight",
        "cross_decode.cross_attn.attention.out_proj.bias",
    }


def test_rope_frequencies_follow_jafar() -> None:
    freqs = upbench.create_operator("jafar", 8, 2, qk_dim=16).rope.freqs.detach().double()
    one_d = 100 ** torch.linspace(0, -1, 4, dtype=torch.float64) * 2 * torch.pi
    expected = torch.zeros(2, 16, dtype=torch.float64)
    expected[0, :8] = torch.cat([one_d, one_d])
    expected[1, 8:] = torch.cat([one_d, one_d])
    torch.testing.assert_close(freqs, expected, rtol=1e-6, atol=1e-6)
