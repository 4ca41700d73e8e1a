"""ReSFU (operators/resfu.py) against an independent float64 reference of the official module.

``resfu_reference`` below is written from the official forward pass (zmhhmz/ReSFU@62e9d9c,
docs/resfu_official.md) with plain ops and loops and reads the parameters from an official-style state
dict, so a strict load into upbench's ReSFU must reproduce it.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import upbench
from upbench.errors import InputShapeError, InvalidOptionError, UnsupportedScaleError

# The official ReSFU(dim_y=32, dim_x=64) state dict: keys in order, with shapes.
OFFICIAL_KEYS_DIM_Y32_DIM_X64 = [
    ("norm_x.weight", (64,)),
    ("norm_x.bias", (64,)),
    ("norm_y.weight", (32,)),
    ("norm_y.bias", (32,)),
    ("GF.kernel", (32, 1, 1, 9)),
    ("q.weight", (32, 32, 1, 1)),
    ("q.bias", (32,)),
    ("k.weight", (32, 64, 1, 1)),
    ("k.bias", (32,)),
    *[
        (f"{block}.{name}", shape)
        for block in ("semantic_scores", "detail_scores")
        for name, shape in [
            ("weight", (128, 8, 3, 3)),
            ("bias", (1, 128, 1, 1)),
            ("norm.weight", (32,)),
            ("norm.bias", (32,)),
            ("channel_compressor.1.weight", (128, 32, 1, 1)),
            ("channel_compressor.1.bias", (128,)),
            ("channel_compressor.3.weight", (128,)),
            ("channel_compressor.3.bias", (128,)),
            ("channel_compressor.4.weight", (9, 128, 1, 1)),
            ("channel_compressor.4.bias", (9,)),
        ]
    ],
]


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# Reference implementation (float64, from the definition)
# ----------------------------------------------------------------------------------------------


def official_like_state_dict(dim_y: int, dim_x: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float64 values for every official key (the guided-filter box kernel is ones)."""
    g = torch.Generator().manual_seed(seed)
    resized = {
        "norm_x.weight": (dim_x,),
        "norm_x.bias": (dim_x,),
        "norm_y.weight": (dim_y,),
        "norm_y.bias": (dim_y,),
        "q.weight": (32, dim_y, 1, 1),
        "k.weight": (32, dim_x, 1, 1),
    }
    sd = {}
    for key, shape in OFFICIAL_KEYS_DIM_Y32_DIM_X64:
        shape = resized.get(key, shape)
        if key == "GF.kernel":
            sd[key] = torch.ones(shape, dtype=torch.float64)
        else:
            offset = 1.0 if "norm" in key and key.endswith("weight") else 0.0
            sd[key] = offset + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    return sd


def box_sum(t: torch.Tensor, r: int) -> torch.Tensor:
    """Sum over the (2r+1)^2 window, zero outside the image."""
    h, w = t.shape[-2:]
    padded = F.pad(t, (r, r, r, r))
    out = torch.zeros_like(t)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out = out + padded[..., dy : dy + h, dx : dx + w]
    return out


def guided_filter_reference(guide, src, radius, eps, scale):
    r = radius // scale
    height, width = guide.shape[-2:]
    rows = slice(0, scale * (height // scale), scale)  # nearest subsampling by 1/scale
    cols = slice(0, scale * (width // scale), scale)
    g, p = guide[..., rows, cols], src[..., rows, cols]
    n = box_sum(torch.ones_like(g), r)
    mg, mp = box_sum(g, r) / n, box_sum(p, r) / n
    a = (box_sum(g * p, r) / n - mg * mp) / (box_sum(g * g, r) / n - mg * mg + eps)
    b = mp - a * mg
    ma, mb = box_sum(a, r) / n, box_sum(b, r) / n
    ma = F.interpolate(ma, size=(height, width), mode="bilinear", align_corners=False)
    mb = F.interpolate(mb, size=(height, width), mode="bilinear", align_corners=False)
    return ma * guide + mb


def pcdc_reference(sd, prefix, neighbours, centres, s, k=3, groups=4, gn_dim=8):
    w = sd[f"{prefix}.weight"]
    nb = F.group_norm(neighbours, gn_dim, sd[f"{prefix}.norm.weight"], sd[f"{prefix}.norm.bias"])
    ce = F.group_norm(centres, gn_dim, sd[f"{prefix}.norm.weight"], sd[f"{prefix}.norm.bias"])
    pad = s * (k - 1) // 2
    v = F.conv2d(F.pad(nb, (pad,) * 4, mode="replicate"), w, dilation=s, groups=groups)
    v = v - F.conv2d(ce, w.sum((2, 3), keepdim=True), groups=groups) + sd[f"{prefix}.bias"]
    c = f"{prefix}.channel_compressor"
    v = F.conv2d(v.relu(), sd[f"{c}.1.weight"], sd[f"{c}.1.bias"], groups=groups).relu()
    v = F.group_norm(v, gn_dim, sd[f"{c}.3.weight"], sd[f"{c}.3.bias"])
    return F.conv2d(v, sd[f"{c}.4.weight"], sd[f"{c}.4.bias"])


def inner_product_reference(neighbours, centres, s, k=3):
    height, width = centres.shape[-2:]
    out = torch.zeros(centres.shape[0], k * k, height, width, dtype=centres.dtype)
    for n in range(k * k):
        oy, ox = (n // k - k // 2) * s, (n % k - k // 2) * s
        for i in range(height):
            for j in range(width):
                ii, jj = min(max(i + oy, 0), height - 1), min(max(j + ox, 0), width - 1)
                out[:, n, i, j] = (centres[:, :, i, j] * neighbours[:, :, ii, jj]).sum(1)
    return out


def aggregate_reference(x, attn, s, k, fine):
    """Fine: bilinear at the clamped half-pixel centre + offset; coarse: LR window at floor(p/s)."""
    b, c, h, w = x.shape
    height, width = attn.shape[-2:]
    out = torch.zeros(b, c, height, width, dtype=x.dtype)
    for n in range(k * k):
        dy, dx = n // k - k // 2, n % k - k // 2
        for i in range(height):
            for j in range(width):
                if fine:
                    yc = min(max((i + 0.5) / s - 0.5 + dy, 0.0), h - 1.0)
                    xc = min(max((j + 0.5) / s - 0.5 + dx, 0.0), w - 1.0)
                    y1, x1 = math.floor(yc), math.floor(xc)
                    y2, x2 = min(y1 + 1, h - 1), min(x1 + 1, w - 1)
                    ty, tx = yc - y1, xc - x1
                    v = (
                        x[:, :, y1, x1] * (1 - ty) * (1 - tx)
                        + x[:, :, y2, x1] * ty * (1 - tx)
                        + x[:, :, y1, x2] * (1 - ty) * tx
                        + x[:, :, y2, x2] * ty * tx
                    )
                else:
                    yi, xi = i // s + dy, j // s + dx
                    inside = 0 <= yi < h and 0 <= xi < w
                    v = x[:, :, yi, xi] if inside else torch.zeros(b, c, dtype=x.dtype)
                out[:, :, i, j] += attn[:, n, i, j, None] * v
    return out


def resfu_reference(
    sd,
    y,
    x,
    s,
    *,
    k=3,
    order="main",
    semantic=True,
    detail=True,
    similarity="pcdc",
    fine=True,
    radius=8,
    eps=1e-3,
    gf_scale=2,
):
    """The official ReSFU forward (current main unless order='v1'), with the upbench ablations."""
    dim_x, dim_y = x.shape[1], y.shape[1]
    xn = F.group_norm(x, 32 if dim_x >= 32 else dim_x, sd["norm_x.weight"], sd["norm_x.bias"])
    yn = F.group_norm(y, 32 if dim_y >= 32 else dim_y, sd["norm_y.weight"], sd["norm_y.bias"])
    q = F.conv2d(yn, sd["q.weight"], sd["q.bias"])
    key = F.conv2d(xn, sd["k.weight"], sd["k.bias"])
    key_up = F.interpolate(key, size=q.shape[-2:], mode="bilinear", align_corners=False)
    c = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    gauss = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / 2)
    gauss = (gauss / gauss.sum()).float().double()  # the official kernel is computed in float32
    gauss = gauss.expand(q.shape[1], 1, 3, 3)
    q_gs = F.conv2d(F.pad(q, (1, 1, 1, 1), mode="replicate"), gauss, groups=q.shape[1]) if detail else q
    q_gf = guided_filter_reference(q, key_up, radius, eps, gf_scale) if semantic else q
    sem, det = ((key_up, q_gf), (q_gs, q)) if order == "main" else ((q_gf, key_up), (q, q_gs))
    if similarity == "pcdc":
        scores = pcdc_reference(sd, "semantic_scores", *sem, s, k)
        scores = scores + pcdc_reference(sd, "detail_scores", *det, s, k)
    else:
        scores = inner_product_reference(*sem, s, k) + inner_product_reference(*det, s, k)
    height, width = scores.shape[-2:]
    for n in range(k * k):
        oy, ox = (n // k - k // 2) * s, (n % k - k // 2) * s
        for i in range(height):
            for j in range(width):
                if not (0 <= i + oy < height and 0 <= j + ox < width):
                    scores[:, n, i, j] += -1e7
    return aggregate_reference(x, scores.softmax(1), s, k, fine)


def inputs(b, dim_x, dim_y, h, w, s, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, dim_x, h, w, generator=g, dtype=torch.float64)
    y = torch.randn(b, dim_y, s * h, s * w, generator=g, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


def build(dim_x=64, scale=2, dim_y=32, sd=None, **options):
    op = upbench.create_operator("resfu", dim_x, scale, guide_channels=dim_y, **options).double()
    if sd is not None:
        missing, unexpected = op.load_state_dict(sd, strict=False)
        assert not missing, missing
    return op


# ----------------------------------------------------------------------------------------------
# Checkpoint compatibility
# ----------------------------------------------------------------------------------------------


def test_state_dict_matches_the_official_key_list():
    op = upbench.create_operator("resfu", 64, 4, guide_channels=32)
    assert [(k, tuple(v.shape)) for k, v in op.state_dict().items()] == OFFICIAL_KEYS_DIM_Y32_DIM_X64
    segmenter = upbench.create_operator("resfu", 384, 4, guide_channels=32)
    assert sum(p.numel() for p in segmenter.parameters()) == 44306  # docs/resfu_official.md
    buffers = dict(op.named_buffers())
    assert "blur_kernel" in buffers and "blur_kernel" not in op.state_dict()
    assert op.double().blur_kernel.dtype == torch.float64  # moves with .to()


def test_strict_round_trip():
    torch.manual_seed(0)
    a = upbench.create_operator("resfu", 64, 2, guide_channels=32).double()
    torch.manual_seed(1)
    b = upbench.create_operator("resfu", 64, 2, guide_channels=32).double()
    x, y = inputs(1, 64, 32, 3, 2, 2)
    assert not torch.allclose(a(x, y), b(x, y))
    b.load_state_dict(a.state_dict(), strict=True)
    torch.testing.assert_close(b(x, y), a(x, y), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("s", "h", "w", "dim_x", "dim_y"),
    [(2, 3, 4, 64, 32), (3, 2, 3, 64, 32), (4, 3, 2, 16, 8), (8, 1, 2, 64, 32)],
)
def test_official_checkpoint_gives_the_reference_output(s, h, w, dim_x, dim_y):
    sd = official_like_state_dict(dim_y, dim_x, seed=s)
    op = upbench.create_operator("resfu", dim_x, s, guide_channels=dim_y).double()
    op.load_state_dict(sd, strict=True)
    x, y = inputs(2, dim_x, dim_y, h, w, s, seed=s)
    expected = resfu_reference(sd, y, x, s)
    out = op(x, y)
    assert (out - expected).norm() / expected.norm() < 1e-6
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Ablations
# ----------------------------------------------------------------------------------------------

ABLATIONS = [
    ({"pcdc_order": "v1"}, {"order": "v1"}),
    ({"semantic": False}, {"semantic": False}),
    ({"detail": False}, {"detail": False}),
    ({"similarity": "inner_product"}, {"similarity": "inner_product"}),
    ({"neighbours": "coarse"}, {"fine": False}),
    ({"aggregation": "naive"}, {}),
    ({"aggregation": "naive", "neighbours": "coarse"}, {"fine": False}),
]


@pytest.mark.parametrize(("options", "ref_options"), ABLATIONS, ids=lambda v: str(v))
def test_ablations_match_the_reference_and_change_the_output(options, ref_options):
    s = 2
    sd = official_like_state_dict(16, 32, seed=5)
    x, y = inputs(2, 32, 16, 3, 2, s, seed=5)
    op = build(32, s, 16, sd, **options)
    out = op(x, y)
    torch.testing.assert_close(out, resfu_reference(sd, y, x, s, **ref_options), rtol=1e-9, atol=1e-9)
    default = build(32, s, 16, sd)(x, y)
    if ref_options:  # a real ablation changes the result; 'naive' only changes the algorithm
        assert (out - default).abs().max() > 1e-3
    else:
        torch.testing.assert_close(out, default, rtol=1e-12, atol=1e-12)


def test_inner_product_has_no_pcdc_parameters():
    op = upbench.create_operator("resfu", 32, 2, similarity="inner_product")
    assert not any(k.startswith(("semantic_scores", "detail_scores")) for k in op.state_dict())
    assert [g["lr_mult"] for g in op.param_groups()] == [1.0]


# ----------------------------------------------------------------------------------------------
# Gradients, parameter groups, dtypes, errors
# ----------------------------------------------------------------------------------------------


def test_gradcheck_module():
    torch.manual_seed(0)
    op = upbench.create_operator("resfu", 4, 2, guide_channels=4, embedding_dim=8).double()
    x, y = inputs(1, 4, 4, 2, 3, 2, seed=3)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(op, (x, y))


def test_param_groups_carry_param_lr_mult():
    op = upbench.create_operator("resfu", 384, 4, guide_channels=32, param_lr_mult=500)
    groups = op.param_groups()
    assert [g["lr_mult"] for g in groups] == [1.0, 500.0]
    pcdc = {id(p) for m in (op.semantic_scores, op.detail_scores) for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == pcdc
    assert sum(p.numel() for p in groups[1]["params"]) == 2 * 15049
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in op.parameters()}
    optimizer = torch.optim.SGD([{"params": g["params"], "lr": 1e-3 * g["lr_mult"]} for g in groups], lr=1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 0.5]


def _pcdc_and_rest_grads(lr_mult: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    op = upbench.create_operator("resfu", 8, 2, guide_channels=8, embedding_dim=8, lr_mult=lr_mult).double()
    x, y = inputs(1, 8, 8, 4, 4, 2, seed=1)
    op(x, y).square().sum().backward()
    pcdc = {id(p) for m in (op.semantic_scores, op.detail_scores) for p in m.parameters()}
    return (
        [p.grad for p in op.parameters() if id(p) in pcdc],
        [p.grad for p in op.parameters() if id(p) not in pcdc],
    )


def test_lr_mult_multiplies_pcdc_gradients_as_the_official_hook():
    # official mmseg/models/upsamplers/resfu.py (zmhhmz/ReSFU@62e9d9c): param.register_hook(lambda grad: grad * lr_mult)
    # on semantic_scores and detail_scores only; the param groups are untouched.
    pcdc_1, rest_1 = _pcdc_and_rest_grads(1.0)
    pcdc_500, rest_500 = _pcdc_and_rest_grads(500.0)
    assert pcdc_1 and rest_1
    for g1, g500 in zip(pcdc_1, pcdc_500, strict=True):
        torch.testing.assert_close(g500, 500.0 * g1, rtol=1e-12, atol=0)
    for g1, g500 in zip(rest_1, rest_500, strict=True):
        torch.testing.assert_close(g500, g1, rtol=0, atol=0)
    op = upbench.create_operator("resfu", 8, 2, guide_channels=8, embedding_dim=8, lr_mult=500)
    assert [g["lr_mult"] for g in op.param_groups()] == [1.0, 1.0]


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_low_precision_modules(dtype, tol):
    torch.manual_seed(0)
    op = upbench.create_operator("resfu", 32, 4, guide_channels=16)
    x, y = inputs(2, 32, 16, 3, 2, 4, seed=1, dtype=torch.float32)
    with torch.no_grad():
        expected = op(x, y)
        out = op.to(dtype)(x.to(dtype), y.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)


def test_autocast_cpu_runs_close_to_float32():
    torch.manual_seed(0)
    op = upbench.create_operator("resfu", 32, 4, guide_channels=16)
    x, y = inputs(2, 32, 16, 2, 3, 4, seed=2, dtype=torch.float32)
    expected = op(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(x, y)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, rtol=1e-1, atol=1e-1)


def test_float32_matches_float64():
    torch.manual_seed(0)
    op = upbench.create_operator("resfu", 32, 3, guide_channels=16)
    x, y = inputs(2, 32, 16, 3, 2, 3, seed=4, dtype=torch.float32)
    out = op(x, y)
    torch.testing.assert_close(out.double(), op.double()(x.double(), y.double()), rtol=1e-4, atol=1e-5)


def test_scale_is_checked_against_the_inputs():
    op = upbench.create_operator("resfu", 32, 4, guide_channels=16)
    x, y = inputs(1, 32, 16, 3, 2, 2, dtype=torch.float32)  # guide for x2, module built for x4
    with pytest.raises(InputShapeError, match="scale 4"):
        op(x, y)
    with pytest.raises(UnsupportedScaleError, match="resfu"):
        upbench.create_operator("resfu", 32, 2.5)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"similarity": "cosine"}, "similarity"),
        ({"neighbours": "nearest"}, "neighbours"),
        ({"pcdc_order": "v2"}, "pcdc_order"),
        ({"aggregation": "fused"}, "aggregation"),
        ({"kernel_size": 4}, "odd"),
        ({"groups": 3}, "groups=3"),
        ({"y_conv": False}, "guide_channels"),
        ({"eps": 0.0}, "eps"),
    ],
)
def test_bad_options_are_named(options, match):
    with pytest.raises(InvalidOptionError, match=match):
        upbench.create_operator("resfu", 32, 2, guide_channels=16, **options)


def test_y_conv_false_uses_the_guide_as_query():
    op = upbench.create_operator("resfu", 32, 2, guide_channels=32, y_conv=False)
    assert "q.weight" not in op.state_dict()
    x, y = inputs(1, 32, 32, 2, 2, 2, dtype=torch.float32)
    assert op(x, y).shape == (1, 32, 4, 4)


def test_metadata():
    info = upbench.operator_info("resfu")
    assert info.guided and info.scales is None and info.paper == "arXiv:2407.02283"
    assert "62e9d9c" in info.code and "B3" in " ".join(info.deviations)
    assert info.options["similarity"] == "pcdc" and info.options["aggregation"] == "auto"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("options", [{}, {"neighbours": "coarse"}, {"aggregation": "naive"}])
def test_cuda_matches_cpu(options):
    sd = official_like_state_dict(16, 32, seed=6)
    x, y = inputs(2, 32, 16, 3, 4, 4, seed=6)
    op = build(32, 4, 16, sd, **options)
    expected = op(x, y)
    torch.testing.assert_close(op.cuda()(x.cuda(), y.cuda()).cpu(), expected, rtol=1e-9, atol=1e-9)
