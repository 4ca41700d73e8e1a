"""Baseline operators against plain-loop float64 references and the official parameter layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import upbench


def _bilinear_loop(x: torch.Tensor, s: int) -> torch.Tensor:
    """align_corners=False bilinear: HR pixel p samples LR at (p + 0.5)/s - 0.5, clamped."""
    b, c, h, w = x.shape
    out = torch.zeros(b, c, s * h, s * w, dtype=x.dtype)
    for i in range(s * h):
        for j in range(s * w):
            y = max((i + 0.5) / s - 0.5, 0.0)
            xx = max((j + 0.5) / s - 0.5, 0.0)
            y0, x0 = min(int(math.floor(y)), h - 1), min(int(math.floor(xx)), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, xx - x0
            out[:, :, i, j] = (
                (1 - dy) * (1 - dx) * x[:, :, y0, x0]
                + (1 - dy) * dx * x[:, :, y0, x1]
                + dy * (1 - dx) * x[:, :, y1, x0]
                + dy * dx * x[:, :, y1, x1]
            )
    return out


@pytest.mark.parametrize("s", [2, 3, 4])
def test_bilinear_matches_loop(s: int) -> None:
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    out = upbench.create_operator("bilinear", 3, s)(x)
    torch.testing.assert_close(out, _bilinear_loop(x, s), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s", [2, 5])
def test_nearest_matches_loop(s: int) -> None:
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64)
    out = upbench.create_operator("nearest", 3, s)(x)
    for i in range(s * 4):
        for j in range(s * 3):
            assert torch.equal(out[:, :, i, j], x[:, :, i // s, j // s])


def _deconv_loop(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, s: int, pad: int) -> torch.Tensor:
    """Transposed conv by scattering: LR pixel (i, j) adds W * x at HR (s*i + u - pad, s*j + v - pad)."""
    b, c, h, w = x.shape
    k = weight.shape[-1]
    out = torch.zeros(b, weight.shape[1], s * h, s * w, dtype=x.dtype) + bias.view(1, -1, 1, 1)
    for i in range(h):
        for j in range(w):
            for u in range(k):
                for v in range(k):
                    oi, oj = s * i + u - pad, s * j + v - pad
                    if 0 <= oi < s * h and 0 <= oj < s * w:
                        out[:, :, oi, oj] += torch.einsum("bc,cd->bd", x[:, :, i, j], weight[:, :, u, v])
    return out


@pytest.mark.parametrize("s", [2, 3, 4, 8])
def test_deconv_any_scale_matches_scatter_reference(s: int) -> None:
    op = upbench.create_operator("deconv", 3, s).double()
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    out = op(x)
    assert out.shape == (2, 3, 3 * s, 4 * s)
    ref = _deconv_loop(x, op.weight, op.bias, s, op.padding)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_deconv_x2_is_the_official_layer() -> None:
    """At x2 the state dict is that of nn.ConvTranspose2d(C, C, 3, 2, 1, 1) and outputs agree."""
    official = torch.nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
    op = upbench.create_operator("deconv", 8, 2)
    assert {k: v.shape for k, v in op.state_dict().items()} == {
        "weight": torch.Size([8, 8, 3, 3]),
        "bias": torch.Size([8]),
    }
    op.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, 8, 5, 6)
    torch.testing.assert_close(op(x), official(x))


def test_pixelshuffle_official_layout_and_reference() -> None:
    s = 3
    official = torch.nn.Sequential(torch.nn.Conv2d(4, 4 * s * s, 3, padding=1), torch.nn.PixelShuffle(s))
    op = upbench.create_operator("pixelshuffle", 4, s)
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == {
        "0.weight": (36, 4, 3, 3),
        "0.bias": (36,),
    }
    op.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, 4, 3, 5)
    out = op(x)
    torch.testing.assert_close(out, official(x))
    # PixelShuffle by definition: out[c, s*i + a, s*j + b] = conv[c*s*s + a*s + b, i, j]
    conv = F.conv2d(x, op.state_dict()["0.weight"], op.state_dict()["0.bias"], padding=1)
    for a in range(s):
        for b_ in range(s):
            torch.testing.assert_close(out[:, :, a::s, b_::s], conv[:, a * s + b_ :: s * s])


@pytest.mark.parametrize("name", ["nearest", "bilinear", "deconv", "pixelshuffle"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_baselines_low_precision_cpu(name: str, dtype: torch.dtype) -> None:
    op = upbench.create_operator(name, 4, 2).to(dtype)
    out = op(torch.randn(1, 4, 3, 3, dtype=dtype))
    assert out.dtype == dtype and out.shape == (1, 4, 6, 6)
