"""DySample / DySample+ against a float64 plain loop written from the definition.

Definition (tiny-smart/dysample): the HR pixel ``(s*I + i, s*J + j)`` of channel group ``g``
bilinearly samples the LR map at ``(J + 0.5, I + 0.5) + ((j - (s-1)/2)/s, (i - (s-1)/2)/s) + O``
(LR pixel units, half-pixel centres, i.e. ``align_corners=False``), with coordinates clamped to
the border; ``O = 0.25 * offset(x)`` (static scope) or ``0.5 * sigmoid(scope(x)) * offset(x)``
(DySample+); offset channel ``c*G*s*s + g*s*s + i*s + j`` holds component ``c`` (0: x, 1: y).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import upbench
from upbench.errors import InputShapeError, InvalidOptionError

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- plain-loop reference


def _bilinear_border(x, u, v):
    """Sample ``x`` (C, h, w) at continuous position (u, v) (pixel centres at +0.5), border clamp."""
    _, h, w = x.shape
    px = min(max(u - 0.5, 0.0), w - 1.0)
    py = min(max(v - 0.5, 0.0), h - 1.0)
    x0, y0 = math.floor(px), math.floor(py)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = px - x0, py - y0
    top = (1 - ax) * x[:, y0, x0] + ax * x[:, y0, x1]
    bottom = (1 - ax) * x[:, y1, x0] + ax * x[:, y1, x1]
    return (1 - ay) * top + ay * bottom


def _conv1x1(weight, bias, t):
    out = torch.einsum("oc,bchw->bohw", weight.reshape(weight.shape[0], -1), t)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _dysample_loop(x, s, groups, offset_w, offset_b, scope_w=None, style="lp"):
    b, c, h, w = x.shape
    feat = x
    if style == "pl":  # feat[ch, I*s + i, J*s + j] = x[ch*s*s + i*s + j, I, J]
        feat = x.reshape(b, c // (s * s), s, s, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // (s * s), h * s, w * s)
    raw = _conv1x1(offset_w, offset_b, feat)
    if scope_w is None:
        raw = 0.25 * raw
    else:
        raw = 0.5 * torch.sigmoid(_conv1x1(scope_w, None, feat)) * raw
    out = torch.zeros(b, c, s * h, s * w, dtype=torch.float64)
    cg = c // groups
    for bi in range(b):
        for big_i in range(h):
            for big_j in range(w):
                for i in range(s):
                    for j in range(s):
                        for g in range(groups):
                            if style == "lp":
                                ch_x = g * s * s + i * s + j
                                ox = raw[bi, ch_x, big_i, big_j]
                                oy = raw[bi, groups * s * s + ch_x, big_i, big_j]
                            else:
                                ox = raw[bi, g, big_i * s + i, big_j * s + j]
                                oy = raw[bi, groups + g, big_i * s + i, big_j * s + j]
                            u = big_j + 0.5 + (j - (s - 1) / 2) / s + ox.item()
                            v = big_i + 0.5 + (i - (s - 1) / 2) / s + oy.item()
                            out[bi, g * cg : (g + 1) * cg, big_i * s + i, big_j * s + j] = _bilinear_border(
                                x[bi, g * cg : (g + 1) * cg], u, v
                            )
    return out


def _randomise(op, seed, std=1.0):
    """Large random offsets (several LR pixels, some beyond the border) instead of the near-zero init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in op.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)
    return op


def _x(c, h, w, seed=0, dtype=torch.float64, batch=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, c, h, w, generator=g, dtype=torch.float64).to(dtype)


# ----------------------------------------------------------------------------- forward against the loop


@pytest.mark.parametrize("name", ["dysample", "dysample_plus"])
@pytest.mark.parametrize(("s", "style"), [(2, "lp"), (3, "lp"), (4, "lp"), (2, "pl"), (3, "pl")])
def test_matches_loop(name, s, style) -> None:
    c = 8 if style == "lp" else 4 * s * s
    op = _randomise(upbench.create_operator(name, c, s, style=style).double(), seed=s)
    x = _x(c, 3, 4, seed=s)
    scope = op.scope.weight.detach() if name == "dysample_plus" else None
    expected = _dysample_loop(x, s, 4, op.offset.weight.detach(), op.offset.bias.detach(), scope, style)
    with torch.no_grad():
        out = op(x)
    # init_pos is a float32 buffer (as the official one), so (j - (s-1)/2)/s is rounded for s = 3.
    tol = 1e-12 if s in (2, 4) else 1e-6
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- equals bilinear at init


@pytest.mark.parametrize("name", ["dysample", "dysample_plus"])
@pytest.mark.parametrize("s", [2, 3, 4, 8])
def test_zero_offsets_equal_bilinear(name, s) -> None:
    op = upbench.create_operator(name, 8, s)
    with torch.no_grad():
        op.offset.weight.zero_()
    x = _x(8, 4, 5, dtype=torch.float32)
    bilinear = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
    torch.testing.assert_close(op(x), bilinear, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["dysample", "dysample_plus"])
def test_default_init_is_close_to_bilinear(name) -> None:
    """The official init (offset weights N(0, 0.001), bias 0, scope 0) moves points by ~1e-3 pixels."""
    torch.manual_seed(0)
    op = upbench.create_operator(name, 16, 2)
    x = _x(16, 6, 6, dtype=torch.float32)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    diff = (op(x) - bilinear).abs().max().item()
    assert 0 < diff < 1e-2


def test_dynamic_scope_at_init_equals_static_scope() -> None:
    """scope = 0 gives sigmoid(0) * 0.5 = 0.25: DySample+ starts exactly as DySample."""
    torch.manual_seed(0)
    static = upbench.create_operator("dysample", 16, 3)
    dynamic = upbench.create_operator("dysample_plus", 16, 3)
    with torch.no_grad():
        dynamic.offset.weight.copy_(static.offset.weight.mul(300))
        static.offset.weight.mul_(300)
    x = _x(16, 4, 4, dtype=torch.float32)
    torch.testing.assert_close(dynamic(x), static(x), rtol=0, atol=0)


def test_initial_positions() -> None:
    op = upbench.create_operator("dysample", 8, 3)
    pos = op.init_pos.view(2, 4, 3, 3)
    thirds = torch.tensor([-1 / 3, 0.0, 1 / 3])
    torch.testing.assert_close(pos[0, 2], thirds.expand(3, 3))  # x varies along the sub-pixel column
    torch.testing.assert_close(pos[1, 2], thirds.view(3, 1).expand(3, 3))  # y along the row


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["dysample", "dysample_plus"])
def test_gradcheck(name) -> None:
    op = _randomise(upbench.create_operator(name, 4, 2, groups=2).double(), seed=21, std=0.3)
    x = _x(4, 3, 3, seed=21, batch=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: op(a), (x,), eps=1e-6, atol=1e-6)
    names = [n for n, _ in op.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in op.parameters())

    def run(*ps):
        return torch.func.functional_call(op, dict(zip(names, ps, strict=True)), (x.detach(),))

    assert torch.autograd.gradcheck(run, params, eps=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- official names


def _official(c, s, groups=4, dyscope=False, style="lp"):
    """tiny-smart/dysample DySample(c, scale=s, style, groups, dyscope) state_dict shapes."""
    cin, cout = (c // (s * s), 2 * groups) if style == "pl" else (c, 2 * groups * s * s)
    shapes = {"offset.weight": (cout, cin, 1, 1), "offset.bias": (cout,)}
    if dyscope:
        shapes["scope.weight"] = (cout, cin, 1, 1)  # bias=False since efcf8ae
    shapes["init_pos"] = (1, 2 * groups * s * s, 1, 1)
    return shapes


@pytest.mark.parametrize(
    ("name", "s", "style", "official"),
    [
        ("dysample", 2, "lp", _official(64, 2)),
        ("dysample", 4, "lp", _official(64, 4)),
        ("dysample_plus", 2, "lp", _official(64, 2, dyscope=True)),
        ("dysample", 2, "pl", _official(64, 2, style="pl")),
        ("dysample_plus", 4, "pl", _official(64, 4, dyscope=True, style="pl")),
    ],
)
def test_official_names_and_strict_load(name, s, style, official) -> None:
    op = upbench.create_operator(name, 64, s, style=style)
    assert {n: tuple(t.shape) for n, t in op.state_dict().items()} == official
    g = torch.Generator().manual_seed(s)
    checkpoint = {n: torch.randn(shape, generator=g) for n, shape in official.items()}
    checkpoint["init_pos"] = op.init_pos.clone()
    fresh = upbench.create_operator(name, 64, s, style=style)
    fresh.load_state_dict(checkpoint, strict=True)
    for n, t in fresh.state_dict().items():
        assert torch.equal(t, checkpoint[n])


def test_parameter_count_matches_official() -> None:
    assert sum(p.numel() for p in upbench.create_operator("dysample", 256, 2).parameters()) == 8_224
    assert sum(p.numel() for p in upbench.create_operator("dysample_plus", 256, 2).parameters()) == 8_224 + 8_192


def test_state_dict_round_trip_strict() -> None:
    a = _randomise(upbench.create_operator("dysample_plus", 16, 4).float(), seed=3, std=0.2)
    b = upbench.create_operator("dysample_plus", 16, 4)
    x = _x(16, 3, 4, dtype=torch.float32)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict(), strict=True)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------- options and errors


@pytest.mark.parametrize(
    ("options", "c", "s", "match"),
    [
        ({"groups": 3}, 8, 2, "not divisible by groups=3"),
        ({"groups": 0}, 8, 2, "groups. = 0 is not valid; it must be an integer >= 1"),
        ({"style": "lpx"}, 8, 2, "style"),
        ({"style": "pl"}, 8, 4, "divisible by scale"),
        ({"dyscope": True}, 8, 2, "unknown option"),
    ],
)
def test_bad_options(options, c, s, match) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        upbench.create_operator("dysample", c, s, **options)


def test_bad_input_and_ignored_guide() -> None:
    op = upbench.create_operator("dysample", 8, 2)
    x = _x(8, 3, 3, dtype=torch.float32)
    with pytest.raises(InputShapeError, match="in_channels=8"):
        op(_x(4, 3, 3, dtype=torch.float32))
    with pytest.raises(InputShapeError, match=r"\(B, C, h, w\)"):
        op(x[0])
    assert torch.equal(op(x, torch.randn(2, 5, 6, 6)), op(x))


@pytest.mark.parametrize("name", ["dysample", "dysample_plus"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_forward_close_to_float32(name, dtype) -> None:
    op = _randomise(upbench.create_operator(name, 16, 4).float(), seed=4, std=0.2)
    x = _x(16, 5, 6, dtype=torch.float32)
    with torch.no_grad():
        ref = op(x)
        out = op.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


def test_autocast_keeps_input_dtype() -> None:
    op = _randomise(upbench.create_operator("dysample", 16, 2).float(), seed=5, std=0.2)
    x = _x(16, 4, 4, dtype=torch.float32)
    with torch.no_grad():
        ref = op(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = op(x)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", ["dysample", "dysample_plus"])
def test_cuda_matches_cpu_and_autocast(name) -> None:
    op = _randomise(upbench.create_operator(name, 16, 3).double(), seed=9, std=0.3)
    x = _x(16, 4, 5, seed=9)
    with torch.no_grad():
        ref = op(x)
        out = op.to("cuda")(x.cuda())
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-10, atol=1e-10)
    op = op.float()
    xf = x.float().cuda().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.float16):
        out = op(xf)
    assert out.dtype == torch.float32
    out.square().sum().backward()
    assert torch.isfinite(xf.grad).all() and xf.grad.abs().sum() > 0
