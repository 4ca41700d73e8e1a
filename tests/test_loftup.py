"""LoftUp: float64 reference written as the official forward (Fourier features by loops, nn.MultiheadAttention
called sequence-first as LoftUp does) and the key list of the released UpsamplerwithChannelNorm."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import upbench

pytestmark = pytest.mark.usefixtures("one_thread")


def _bn(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def _ln(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)}


def _layer(i: int, width: int = 404, dim: int = 384) -> dict[str, tuple[int, ...]]:
    p = f"upsampler.ca_transformer.layers.{i}"
    return {
        **_ln(f"{p}.0.norm_q", width),
        **_ln(f"{p}.0.norm_kv", width),
        f"{p}.0.attention.in_proj_weight": (3 * width, width),
        f"{p}.0.attention.in_proj_bias": (3 * width,),
        f"{p}.0.attention.out_proj.weight": (width, width),
        f"{p}.0.attention.out_proj.bias": (width,),
        **_ln(f"{p}.1.net.0", width),
        f"{p}.1.net.1.weight": (dim, width),
        f"{p}.1.net.1.bias": (dim,),
        f"{p}.1.net.4.weight": (width, dim),
        f"{p}.1.net.4.bias": (width,),
    }


#: hubconf.loftup_dinov2s: UpsamplerwithChannelNorm(LoftUp(384, lr_pe_type="sine"), ChannelNorm(384)) in
#: andrehuang/loftup@6620d9b, written out from upsamplers/upsamplers.py and upsamplers/layers.py.
OFFICIAL_KEYS = {
    "upsampler.lr_pe.biases": (2, 2, 5),
    "upsampler.fourier_feat.1.biases": (2, 5, 20),
    **_ln("upsampler.first_conv.0.norm", 203),
    "upsampler.first_conv.1.weight": (404, 203, 3, 3),
    "upsampler.first_conv.1.bias": (404,),
    **_bn("upsampler.first_conv.2", 404),
    "upsampler.first_conv.4.weight": (404, 404, 3, 3),
    "upsampler.first_conv.4.bias": (404,),
    **_bn("upsampler.first_conv.5", 404),
    "upsampler.final_conv.0.weight": (384, 404, 1, 1),
    "upsampler.final_conv.0.bias": (384,),
    **_ln("upsampler.final_conv.1", 384),
    **_ln("upsampler.ca_transformer.norm", 404),
    **_layer(0),
    **_layer(1),
    **_ln("channelnorm.norm", 384),
}


def _fourier(image: torch.Tensor, biases: torch.Tensor, n_freqs: int, color: bool) -> torch.Tensor:
    """ImplicitFeaturizer by its definition: channel f*M + m is sin/cos(feat_m * exp(f-th freq) + bias)."""
    b, _, h, w = image.shape
    rows = torch.tensor([-1 + 2 * i / (h - 1) for i in range(h)], dtype=torch.float64).view(h, 1).expand(h, w)
    cols = torch.tensor([-1 + 2 * j / (w - 1) for j in range(w)], dtype=torch.float64).view(1, w).expand(h, w)
    base = [rows.expand(b, h, w), cols.expand(b, h, w)] + (
        [image[:, c] for c in range(image.shape[1])] if color else []
    )
    m = len(base)
    flat_sin, flat_cos = biases[0].flatten(), biases[1].flatten()
    sins, coss = [], []
    for f in range(n_freqs):
        freq = math.exp(-2 + 12 * f / (n_freqs - 1))
        for k in range(m):
            sins.append(torch.sin(base[k] * freq + flat_sin[f * m + k]))
            coss.append(torch.cos(base[k] * freq + flat_cos[f * m + k]))
    return torch.cat([torch.stack(sins, 1), torch.stack(coss, 1)] + ([image] if color else []), dim=1)


def loftup_reference(op, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    up = op.upsampler
    with torch.no_grad():
        lr = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), *op.channelnorm.norm.parameters()).permute(0, 3, 1, 2)
        low = image.amin(dim=(0, 2, 3), keepdim=True)
        scaled = (image - low) / (image.amax(dim=(0, 2, 3), keepdim=True) - low).clamp(min=1e-4) - 0.5
        q = up.first_conv(_fourier(scaled, up.fourier_feat[1].biases, up.fourier_feat[1].n_freqs, True))
        b, c, h, w = q.shape
        kv = torch.cat([lr, _fourier(lr, up.lr_pe.biases, 5, False)], 1).flatten(2).transpose(1, 2)
        q = q.flatten(2).transpose(1, 2)
        for attn_layer, ff in up.ca_transformer.layers:
            key = attn_layer.norm_kv(kv).transpose(0, 1)
            out, _ = attn_layer.attention(attn_layer.norm_q(q).transpose(0, 1), key, key)  # sequence first
            q = out.transpose(0, 1) + q
            q = ff(q) + q
        q = up.ca_transformer.norm(q).transpose(1, 2).reshape(b, c, h, w)
        y = up.final_conv[0](q)
        ln = up.final_conv[1]
        mean = y.mean(1, keepdim=True)
        var = (y - mean).pow(2).mean(1, keepdim=True)
        return ln.weight.view(1, -1, 1, 1) * (y - mean) / torch.sqrt(var + 1e-6) + ln.bias.view(1, -1, 1, 1)


def _randomise(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)


@pytest.mark.parametrize(("lr", "hr"), [((3, 4), (6, 8)), ((2, 3), (7, 5))], ids=["x2", "any-size"])
def test_matches_the_official_forward_in_float64(lr: tuple[int, int], hr: tuple[int, int]) -> None:
    torch.manual_seed(0)
    op = upbench.create_operator("loftup", 12, 2, n_freqs=4).double().eval()
    _randomise(op)
    x = torch.randn(2, 12, *lr, dtype=torch.float64)
    image = torch.randn(2, 3, *hr, dtype=torch.float64)
    torch.testing.assert_close(op(x, image), loftup_reference(op, x, image), rtol=1e-9, atol=1e-9)


def test_official_key_list_loads_strictly() -> None:
    op = upbench.create_operator("loftup", 384, 16)
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == OFFICIAL_KEYS
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(s, generator=g) if s else torch.tensor(7) for k, s in OFFICIAL_KEYS.items()}
    op.load_state_dict(official, strict=True)
    assert torch.equal(op.upsampler.lr_pe.biases, official["upsampler.lr_pe.biases"])
    bare = upbench.create_operator("loftup", 384, 16, channel_norm=False)
    assert not any(k.startswith("channelnorm") for k in bare.state_dict())


def test_heads_must_divide_the_width() -> None:
    with pytest.raises(upbench.InvalidOptionError, match="divisible by num_heads"):
        upbench.create_operator("loftup", 13, 2)
