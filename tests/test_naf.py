"""NAF: the NATTEN-free neighbourhood attention against a float64 loop written from NATTEN's window rule,
the full forward against a reference, small LR maps (global attention) and NAF's key list."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import upbench
from upbench_operators.naf import nearest_exact_index, neighbourhood_attention

pytestmark = pytest.mark.usefixtures("one_thread")


def _enc_keys(prefix: str, k: int) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.0.weight": (128, 3, k, k), f"{prefix}.0.bias": (128,)}
    for block in (1, 2):
        for part in ("norm1", "norm2"):
            keys |= {f"{prefix}.{block}.{part}.weight": (128,), f"{prefix}.{block}.{part}.bias": (128,)}
        for part in ("conv1", "conv2"):
            keys |= {f"{prefix}.{block}.{part}.weight": (128, 128, k, k), f"{prefix}.{block}.{part}.bias": (128,)}
    return keys


#: ``NAF()`` (config/model/naf.yaml, hubconf.naf) in valeoai/NAF@ad4e24d, written out from src/model/naf.py
#: and src/layers/*.py: only the image encoder has weights; ``rope.periods`` is a persistent buffer.
OFFICIAL_KEYS = {
    **_enc_keys("image_encoder.encoder", 1),
    **_enc_keys("image_encoder.sem_encoder", 3),
    "image_encoder.rope.periods": (16,),
}


def natten_window_start(index: int, length: int, kernel_size: int, dilation: int) -> int:
    """NATTEN's get_window_start (neighbourhood attention with dilation), from its definition."""
    nb = kernel_size // 2
    if dilation <= 1:
        return max(index - nb, 0) + (index + nb >= length) * (length - index - nb - 1)
    if index - nb * dilation < 0:
        return index % dilation
    if index + nb * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        if imodd < length - a:
            return length - (length - a) + imodd - 2 * nb * dilation
        return a + imodd - kernel_size * dilation
    return index - nb * dilation


def attention_reference(q, k, v, kernel_size: int, scale: float) -> torch.Tensor:
    """NAF's CrossAttention.forward with na2d_qk/na2d_av written as loops: k, v resized nearest-exact to HR."""
    b, n, dq, big_h, big_w = q.shape
    dv = v.shape[2]
    dil = (big_h // k.shape[-2], big_w // k.shape[-1])
    k_hr = F.interpolate(k.flatten(1, 2), size=(big_h, big_w), mode="nearest-exact").view(b, n, dq, big_h, big_w)
    v_hr = F.interpolate(v.flatten(1, 2), size=(big_h, big_w), mode="nearest-exact").view(b, n, dv, big_h, big_w)
    out = torch.zeros(b, n, dv, big_h, big_w, dtype=q.dtype)
    for i in range(big_h):
        r0 = natten_window_start(i, big_h, kernel_size, dil[0])
        rows = [r0 + a * dil[0] for a in range(kernel_size)]
        for j in range(big_w):
            c0 = natten_window_start(j, big_w, kernel_size, dil[1])
            cols = [c0 + c * dil[1] for c in range(kernel_size)]
            keys = k_hr[..., rows, :][..., cols]  # (B, n, Dq, k, k)
            scores = (q[..., i, j, None, None] * keys).sum(2).flatten(-2) * scale
            weights = scores.softmax(-1).view(b, n, 1, kernel_size, kernel_size)
            out[..., i, j] = (weights * v_hr[..., rows, :][..., cols]).sum((-2, -1))
    return out


@pytest.mark.parametrize(
    ("lr", "hr", "kernel"), [((9, 10), (18, 30), 9), ((5, 7), (13, 16), 5)], ids=["x2x3", "any-size"]
)
def test_neighbourhood_attention_matches_natten_rule(lr, hr, kernel) -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 4, *hr, generator=g, dtype=torch.float64)
    k = torch.randn(1, 2, 4, *lr, generator=g, dtype=torch.float64)
    v = torch.randn(1, 2, 3, *lr, generator=g, dtype=torch.float64)
    expected = attention_reference(q, k, v, kernel, 0.5)
    torch.testing.assert_close(neighbourhood_attention(q, k, v, kernel, 0.5), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(neighbourhood_attention(q, k, v, kernel, 0.5, chunk_elements=1), expected)


def test_lr_smaller_than_the_window_is_global_attention() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 2, 4, 9, 15, generator=g, dtype=torch.float64)
    k = torch.randn(2, 2, 4, 3, 5, generator=g, dtype=torch.float64)
    v = torch.randn(2, 2, 3, 3, 5, generator=g, dtype=torch.float64)
    weights = torch.einsum("bndhw,bndl->bnhwl", q, k.flatten(-2)).mul(0.5).softmax(-1)
    dense = torch.einsum("bnhwl,bndl->bndhw", weights, v.flatten(-2))
    torch.testing.assert_close(neighbourhood_attention(q, k, v, 9, 0.5), dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("out_len", "in_len"), [(16, 4), (13, 5), (224, 16), (45, 23), (7, 7), (100, 3)])
def test_nearest_exact_index_is_torchs(out_len: int, in_len: int) -> None:
    src = torch.arange(in_len, dtype=torch.float32).view(1, 1, 1, in_len)
    expected = F.interpolate(src, size=(1, out_len), mode="nearest-exact").flatten().long()
    assert torch.equal(torch.from_numpy(nearest_exact_index(out_len, in_len)), expected)


def _rope_reference(x: torch.Tensor, periods: torch.Tensor, heads: int) -> torch.Tensor:
    b, c, h, w = x.shape
    d = c // heads
    out = torch.empty_like(x)
    f32 = torch.float32  # NAF computes coordinates and angles in float32 (its periods buffer's dtype)
    for i in range(h):
        for j in range(w):
            u = torch.tensor(i + 0.5, dtype=f32) / h * 2.0 - 1.0
            s = torch.tensor(j + 0.5, dtype=f32) / w * 2.0 - 1.0
            ang = torch.cat([2 * math.pi * u / periods, 2 * math.pi * s / periods]).repeat(2)
            vec = x[:, :, i, j].view(b, heads, d)
            rot = torch.cat([-vec[..., d // 2 :], vec[..., : d // 2]], dim=-1)
            out[:, :, i, j] = (vec * ang.cos().to(x.dtype) + rot * ang.sin().to(x.dtype)).reshape(b, c)
    return out


def test_forward_matches_reference_in_float64() -> None:
    torch.manual_seed(0)
    op = upbench.create_operator("naf", 8, 2, dim=32, heads_attn=2, heads_rope=2, kernel_size=3).double().eval()
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    image = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    enc = op.image_encoder
    with torch.no_grad():
        feats = F.adaptive_avg_pool2d(torch.cat([enc.encoder(image), enc.sem_encoder(image)], 1), (9, 11))
        queries = _rope_reference(feats, enc.rope.periods, 2)
        keys = F.adaptive_avg_pool2d(queries, (4, 5))
        split = lambda t: t.unflatten(1, (2, t.shape[1] // 2))  # noqa: E731
        expected = attention_reference(split(queries), split(keys), split(x), 3, 16**-0.5).reshape(2, 8, 9, 11)
    # NAF's RoPE angles are float32: float32 cos/sin differ by an ulp between vectorised and scalar kernels,
    # hence 1e-6 here; the attention itself is compared at 1e-10 above.
    torch.testing.assert_close(op(x, image), expected, rtol=1e-5, atol=1e-6)


def test_official_key_list_loads_strictly_for_any_feature_dimension() -> None:
    for channels in (384, 1024):
        op = upbench.create_operator("naf", channels, 16)
        assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == OFFICIAL_KEYS
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=g) for k, shape in OFFICIAL_KEYS.items()}
    op.load_state_dict(official, strict=True)
    expected_periods = 100.0 ** (2 * torch.arange(16) / 32)
    torch.testing.assert_close(upbench.create_operator("naf", 8, 2).image_encoder.rope.periods, expected_periods)


def test_channels_must_split_into_heads_and_output_must_not_shrink() -> None:
    with pytest.raises(upbench.InvalidOptionError, match="divisible by heads_attn"):
        upbench.create_operator("naf", 6, 2)
    op = upbench.create_operator("naf", 8, 2)
    with pytest.raises(upbench.InputShapeError, match="at least the input"):
        op(torch.randn(1, 8, 6, 6), torch.randn(1, 3, 5, 12))
