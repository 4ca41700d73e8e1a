"""SAPA-B / SAPA-G / SAPA-I against float64 plain loops written from the definition.

Definition (official ``qk``/``av`` CUDA kernels): every HR pixel ``p`` attends to the ``k x k``
LR window centred on ``floor(p / s)``; an out-of-image tap scores 0 (and stays in the softmax)
and contributes the value 0; the value is the raw LR ``x``.
"""

from __future__ import annotations

import math

import pytest
import torch

import upbench
from upbench.errors import InputShapeError, InvalidOptionError
from upbench_operators._window_similarity import window_similarity, window_similarity_naive
from upbench_operators.sapa import SAPA, group_norm_groups

EPS = 1e-5  # PyTorch's GroupNorm / LayerNorm default epsilon, as in the official modules


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- plain-loop references


def _attend_loop(q, key, x, k, s):
    """out[:, :, P] = sum_n softmax_n(q[P] . key[I+n]) x[I+n]; outside taps score 0 and value 0."""
    b, c, h, w = x.shape
    r = k // 2
    out = torch.zeros(b, c, s * h, s * w, dtype=torch.float64)
    for i in range(s * h):
        for j in range(s * w):
            scores, values = [], []
            for n in range(k * k):
                yi, xj = i // s + n // k - r, j // s + n % k - r
                inside = 0 <= yi < h and 0 <= xj < w
                scores.append(
                    (q[:, :, i, j] * key[:, :, yi, xj]).sum(1) if inside else torch.zeros(b, dtype=torch.float64)
                )
                values.append(x[:, :, yi, xj] if inside else torch.zeros(b, c, dtype=torch.float64))
            weights = torch.softmax(torch.stack(scores, 1), dim=1)
            out[:, :, i, j] = sum(weights[:, n, None] * values[n] for n in range(k * k))
    return out


def _group_norm(t, groups, weight, bias):
    b, c, h, w = t.shape
    g = t.reshape(b, groups, -1)
    mean = g.mean(-1, keepdim=True)
    var = ((g - mean) ** 2).mean(-1, keepdim=True)
    t = ((g - mean) / torch.sqrt(var + EPS)).reshape(b, c, h, w)
    return t * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def _layer_norm(t, weight=None, bias=None):
    mean = t.mean(1, keepdim=True)
    var = ((t - mean) ** 2).mean(1, keepdim=True)
    t = (t - mean) / torch.sqrt(var + EPS)
    if weight is not None:
        t = t * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    return t


def _proj(weight, bias, t):
    """1x1 projection ``weight @ t + bias`` over channels; ``weight`` is (E, C) or (E, C, 1, 1)."""
    out = torch.einsum("ec,bchw->behw", weight.reshape(weight.shape[0], -1), t)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _nearest(t, s):
    return t.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)


def _sapa_b_ref(p, x, y, k, s, norm=True):
    if norm:
        y = _group_norm(y, group_norm_groups(y.shape[1]), p["norm_y.weight"], p["norm_y.bias"])
        x_ = _group_norm(x, group_norm_groups(x.shape[1]), p["norm_x.weight"], p["norm_x.bias"])
    else:
        x_ = x
    return _attend_loop(_proj(p["q.weight"], p["q.bias"], y), _proj(p["k.weight"], p["k.bias"], x_), x, k, s)


def _sapa_g_ref(p, x, y, k, s):
    y = _layer_norm(y, p["norm_y.weight"], p["norm_y.bias"])
    x_ = _layer_norm(x, p["norm_x.weight"], p["norm_x.bias"])
    gate = _nearest(torch.sigmoid(_proj(p["gate.weight"], p["gate.bias"], x_)), s)
    from_guide = _proj(p["qy.weight"], p["qy.bias"], y)
    from_x = _proj(p["qx.weight"], p["qx.bias"], _nearest(x, s))  # projection after upsampling, as official
    q = gate * from_guide + (1 - gate) * from_x
    return _attend_loop(q, _proj(p["k.weight"], p["k.bias"], x_), x, k, s)


def _sapa_i_ref(p, x, y, k, s):
    if "aligner.weight" in p:
        y = _proj(p["aligner.weight"], p["aligner.bias"], y)
    return _attend_loop(_layer_norm(y), _layer_norm(x), x, k, s)


REFERENCES = {"sapa": _sapa_b_ref, "sapa_g": _sapa_g_ref, "sapa_i": _sapa_i_ref}


def _randomise(op, seed):
    """Replace every parameter by N(0, 0.5) values so that the attention is far from uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in op.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    return op


def _inputs(c, cg, h, w, s, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, h, w, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randn(2, cg, s * h, s * w, generator=g, dtype=torch.float64).to(dtype)
    return x, y


# ----------------------------------------------------------------------------- forward against the loops


@pytest.mark.parametrize("name", ["sapa", "sapa_g", "sapa_i"])
@pytest.mark.parametrize(("s", "k", "cg"), [(2, 5, 8), (3, 3, 6), (4, 5, 8)])
def test_matches_loop(name, s, k, cg) -> None:
    op = upbench.create_operator(name, 8, s, guide_channels=cg, up_kernel_size=k).double()
    _randomise(op, seed=s * 10 + k)
    x, y = _inputs(8, cg, 3, 4, s, seed=s)
    params = {n: p.detach() for n, p in op.named_parameters()}
    expected = REFERENCES[name](params, x, y, k, s)
    with torch.no_grad():
        torch.testing.assert_close(op(x, y), expected, rtol=1e-10, atol=1e-10)


def test_sapa_b_without_norm_matches_loop() -> None:
    op = _randomise(upbench.create_operator("sapa", 4, 2, guide_channels=4, norm=False).double(), seed=3)
    assert not any(n.startswith("norm") for n, _ in op.named_parameters())
    x, y = _inputs(4, 4, 3, 3, 2, seed=3)
    params = {n: p.detach() for n, p in op.named_parameters()}
    with torch.no_grad():
        torch.testing.assert_close(op(x, y), _sapa_b_ref(params, x, y, 5, 2, norm=False), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["sapa", "sapa_g", "sapa_i"])
def test_naive_aggregation_equals_chunked(name) -> None:
    x, y = _inputs(8, 8, 4, 5, 3, seed=7)
    op = _randomise(upbench.create_operator(name, 8, 3).double(), seed=7)
    naive = upbench.create_operator(name, 8, 3, aggregation="naive").double()
    naive.load_state_dict(op.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(op(x, y), naive(x, y), rtol=1e-12, atol=1e-12)


def test_border_taps_score_zero_and_stay_in_softmax() -> None:
    """Zero guide and raw features: every score is 0, so each output is (in-image taps) / 25 of x=1."""
    op = upbench.create_operator("sapa_i", 4, 2, norm=False).double()
    x = torch.ones(1, 4, 4, 4, dtype=torch.float64)
    out = op(x, torch.zeros(1, 4, 8, 8, dtype=torch.float64))
    # In-image taps per LR row (and column) for k=5 on a side of 4: 3, 4, 4, 3.
    counts = torch.tensor([3, 4, 4, 3], dtype=torch.float64)
    expected = _nearest((counts[:, None] * counts[None, :] / 25).expand(1, 4, 4, 4), 2)
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------- the similarity helper


@pytest.mark.parametrize(("k", "s", "chunk"), [(5, 2, None), (3, 3, 40), (5, 4, 100)])
def test_window_similarity_matches_loop(k, s, chunk) -> None:
    g = torch.Generator().manual_seed(k + s)
    key = torch.randn(2, 3, 4, 3, generator=g, dtype=torch.float64)
    query = torch.randn(2, 3, 4 * s, 3 * s, generator=g, dtype=torch.float64)
    r = k // 2
    expected = torch.zeros(2, k * k, 4 * s, 3 * s, dtype=torch.float64)
    for i in range(4 * s):
        for j in range(3 * s):
            for n in range(k * k):
                yi, xj = i // s + n // k - r, j // s + n % k - r
                if 0 <= yi < 4 and 0 <= xj < 3:
                    expected[:, n, i, j] = (query[:, :, i, j] * key[:, :, yi, xj]).sum(1)
    kwargs = {} if chunk is None else {"chunk_elements": chunk}
    torch.testing.assert_close(window_similarity(query, key, k, s, **kwargs), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(window_similarity_naive(query, key, k, s), expected, rtol=1e-12, atol=1e-12)


def test_window_similarity_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="query must be"):
        window_similarity(torch.zeros(1, 2, 5, 6), torch.zeros(1, 2, 3, 3), 5, 2)
    with pytest.raises(ValueError, match="odd"):
        window_similarity(torch.zeros(1, 2, 6, 6), torch.zeros(1, 2, 3, 3), 4, 2)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["sapa", "sapa_g", "sapa_i"])
def test_gradcheck(name) -> None:
    op = _randomise(upbench.create_operator(name, 4, 2, guide_channels=4, up_kernel_size=3).double(), seed=11)
    x, y = _inputs(4, 4, 2, 3, 2, seed=11)
    x = x[:1].requires_grad_(True)
    y = y[:1].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: op(a, b), (x, y), eps=1e-6, atol=1e-6)


def test_gradcheck_parameters() -> None:
    op = _randomise(upbench.create_operator("sapa", 4, 3, up_kernel_size=3).double(), seed=12)
    x, y = _inputs(4, 4, 2, 2, 3, seed=12)
    names = [n for n, _ in op.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in op.parameters())

    def run(*ps):
        return torch.func.functional_call(op, dict(zip(names, ps, strict=True)), (x[:1], y[:1]))

    assert torch.autograd.gradcheck(run, params, eps=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- official parameter names


def _official_sapa_b(c, cg, e=32):
    """tiny-smart/sapa sapa_base.py SAPA(dim_y=cg, dim_x=c, embedding_dim=32, norm=True)."""
    return {
        "norm_y.weight": (cg,),
        "norm_y.bias": (cg,),
        "norm_x.weight": (c,),
        "norm_x.bias": (c,),
        "q.weight": (e, cg, 1, 1),
        "q.bias": (e,),
        "k.weight": (e, c, 1, 1),
        "k.bias": (e,),
    }


def _official_sapa_g(c, cg, e=32):
    """poppinace/sapa SAPAExp(dim_y=cg, dim_x=c, q_mode='gate', embedding_dim=32)."""
    return {
        "norm_y.weight": (cg,),
        "norm_y.bias": (cg,),
        "norm_x.weight": (c,),
        "norm_x.bias": (c,),
        "qy.weight": (e, cg),
        "qy.bias": (e,),
        "qx.weight": (e, c),
        "qx.bias": (e,),
        "gate.weight": (1, c),
        "gate.bias": (1,),
        "k.weight": (e, c),
        "k.bias": (e,),
    }


@pytest.mark.parametrize(
    ("name", "official"),
    [("sapa", _official_sapa_b(64, 48)), ("sapa_g", _official_sapa_g(64, 48)), ("sapa_i", {})],
)
def test_official_parameter_names_and_shapes(name, official) -> None:
    op = upbench.create_operator(name, 64, 2, guide_channels=48 if official else 64)
    assert {n: tuple(t.shape) for n, t in op.state_dict().items()} == official
    g = torch.Generator().manual_seed(0)
    checkpoint = {n: torch.randn(shape, generator=g) for n, shape in official.items()}
    fresh = upbench.create_operator(name, 64, 2, guide_channels=48 if official else 64)
    fresh.load_state_dict(checkpoint, strict=True)
    for n, t in fresh.state_dict().items():
        assert torch.equal(t, checkpoint[n])


def test_sapa_b_parameter_count_matches_official() -> None:
    """17,472 parameters at C=256 (2 GroupNorms + two 1x1 convs to 32 dims), as the official module."""
    op = upbench.create_operator("sapa", 256, 2)
    assert sum(p.numel() for p in op.parameters()) == 2 * 2 * 256 + 2 * (256 * 32 + 32)
    assert sum(p.numel() for p in op.parameters()) == 17_472


@pytest.mark.parametrize("name", ["sapa", "sapa_g"])
def test_state_dict_round_trip_strict(name) -> None:
    torch.manual_seed(1)
    a = _randomise(upbench.create_operator(name, 32, 4, guide_channels=16), seed=1)
    b = upbench.create_operator(name, 32, 4, guide_channels=16)
    x, y = _inputs(32, 16, 2, 3, 4, dtype=torch.float32)
    assert not torch.allclose(a(x, y), b(x, y))
    b.load_state_dict(a.state_dict(), strict=True)
    torch.testing.assert_close(a(x, y), b(x, y), rtol=0, atol=0)


def test_official_initialisation() -> None:
    torch.manual_seed(0)
    b = upbench.create_operator("sapa", 256, 2)
    g = upbench.create_operator("sapa_g", 256, 2)
    for conv in (b.q, b.k):
        assert abs(conv.weight.std().item() - 0.02) < 0.002 and torch.all(conv.bias == 0)
    for lin in (g.qy, g.qx, g.k):
        assert abs(lin.weight.std().item() - 0.02) < 0.002 and torch.all(lin.bias == 0)
    assert torch.all(b.norm_x.weight == 1) and torch.all(g.norm_y.bias == 0)


# ----------------------------------------------------------------------------- registry, options, errors


def test_sapa_is_sapa_b() -> None:
    assert upbench.operator_info("sapa").title == "SAPA-B"
    assert type(upbench.create_operator("sapa_b", 32, 2)) is SAPA
    assert upbench.operator_info("sapa_i").learnable is False
    assert {"sapa", "sapa_g", "sapa_i"} <= set(upbench.list_operators("sapa*"))


def test_group_norm_groups() -> None:
    assert group_norm_groups(256) == 32
    assert group_norm_groups(48) == 16
    assert group_norm_groups(6) == 2
    assert upbench.create_operator("sapa", 256, 2).norm_x.num_groups == 32


def test_sapa_i_aligner_only_when_channels_differ() -> None:
    assert not list(upbench.create_operator("sapa_i", 16, 2).parameters())
    op = upbench.create_operator("sapa_i", 16, 2, guide_channels=8)
    assert tuple(op.aligner.weight.shape) == (16, 8, 1, 1)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("sapa", {"up_kernel_size": 4}, "odd"),
        ("sapa_g", {"up_kernel_size": 0}, ">= 1 and odd"),
        ("sapa", {"embedding_dim": 0}, "embedding_dim"),
        ("sapa_i", {"aggregation": "fast"}, "aggregation"),
        ("sapa_i", {"embedding_dim": 8}, "unknown option"),
    ],
)
def test_bad_options(name, options, match) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        upbench.create_operator(name, 32, 2, **options)


def test_bad_inputs() -> None:
    op = upbench.create_operator("sapa", 32, 2)
    x, y = _inputs(32, 32, 3, 4, 2, dtype=torch.float32)
    with pytest.raises(InputShapeError, match="guided"):
        op(x)
    with pytest.raises(InputShapeError, match="needs 6x8"):
        op(x, y[..., :-1])
    with pytest.raises(InputShapeError, match="guide_channels=32"):
        op(x, y[:, :16])


# ----------------------------------------------------------------------------- dtypes and autocast


@pytest.mark.parametrize("name", ["sapa", "sapa_g", "sapa_i"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_forward_close_to_float32(name, dtype) -> None:
    op = upbench.create_operator(name, 32, 2)
    x, y = _inputs(32, 32, 3, 4, 2, dtype=torch.float32)
    with torch.no_grad():
        ref = op(x, y)
        out = op.to(dtype)(x.to(dtype), y.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


def test_autocast_keeps_input_dtype_and_softmax_accuracy() -> None:
    op = _randomise(upbench.create_operator("sapa", 32, 2), seed=5).float()
    x, y = _inputs(32, 32, 3, 4, 2, dtype=torch.float32)
    with torch.no_grad():
        ref = op(x, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = op(x, y)
    assert out.dtype == torch.float32
    assert math.isfinite(out.abs().max().item())
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", ["sapa", "sapa_g", "sapa_i"])
def test_cuda_matches_cpu_and_autocast(name) -> None:
    op = _randomise(upbench.create_operator(name, 16, 3, guide_channels=8).double(), seed=9)
    x, y = _inputs(16, 8, 4, 5, 3, seed=9)
    with torch.no_grad():
        ref = op(x, y)
        out = op.to("cuda")(x.cuda(), y.cuda())
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-10, atol=1e-10)
    op = op.float()
    xf = x.float().cuda().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.float16):
        out = op(xf, y.float().cuda())
    assert out.dtype == torch.float32
    out.square().sum().backward()
    assert torch.isfinite(xf.grad).all() and xf.grad.abs().sum() > 0
