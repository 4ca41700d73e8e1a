"""FADE and FADE-Lite against a float64 plain-loop reference written from the definition.

Definition (poppinace/fade FADE_L2H.py, generalised from nearest x2 to nearest x s): with ``en`` the
HR guide and ``de`` the LR input, the logits of HR pixel p are
``conv3(C_en(en))[p] + conv3(C_de(de))[floor(p/s)]`` (one shared zero-padded 3x3 conv; depthwise
for FADE-Lite), a softmax over the k*k taps gives the kernel, the LR window of k x k pixels centred
on floor(p/s) is reassembled (out-of-range taps contribute nothing, weights kept) and the gate
``g = sigmoid(conv1x1(de)[floor(p/s)])`` mixes ``g * en[p] + (1 - g) * reassembled``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import upbench
from upbench.errors import InputShapeError, InvalidOptionError
from upbench_operators.fade import FADE, nearest_up

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------
# float64 plain-loop reference
# --------------------------------------------------------------------------------------------------


def conv2d_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int = 1) -> torch.Tensor:
    """'Same'-size zero-padded convolution, one output pixel, one tap and one group at a time."""
    b, ci, h, w = x.shape
    co, cig, kh, kw = weight.shape
    cog, pad = co // groups, (kh - 1) // 2
    out = torch.zeros(b, co, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            for dy in range(kh):
                for dx in range(kw):
                    y, xx = i + dy - pad, j + dx - pad
                    if not (0 <= y < h and 0 <= xx < w):
                        continue
                    for g in range(groups):
                        src = x[:, g * cig : (g + 1) * cig, y, xx]
                        out[:, g * cog : (g + 1) * cog, i, j] += src @ weight[g * cog : (g + 1) * cog, :, dy, dx].T
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def fade_ref(
    x: torch.Tensor, guide: torch.Tensor, sd: dict[str, torch.Tensor], s: int, k: int, lite: bool, gating: bool = True
) -> torch.Tensor:
    de, en = x.double(), guide.double()
    sd = {key: v.double() for key, v in sd.items()}
    groups = k * k if lite else 1
    enc = conv2d_ref(en, sd["ker_generator.compressor_en.weight"], sd["ker_generator.compressor_en.bias"])
    dec = conv2d_ref(de, sd["ker_generator.compressor_de.weight"], None)
    w_ce, b_ce = sd["ker_generator.content_encoder.weight"], sd["ker_generator.content_encoder.bias"]
    hr_logits = conv2d_ref(enc, w_ce, b_ce, groups)
    lr_logits = conv2d_ref(dec, w_ce, b_ce, groups)
    if gating:
        gate_lr = conv2d_ref(de, sd["gate_generator.conv.weight"], sd["gate_generator.conv.bias"])
    b, c, h, w = de.shape
    r = k // 2
    out = torch.zeros(b, c, s * h, s * w, dtype=torch.float64)
    for p in range(s * h):
        for q in range(s * w):
            i, j = p // s, q // s
            z = hr_logits[:, :, p, q] + lr_logits[:, :, i, j]
            e = torch.exp(z - z.max(dim=1, keepdim=True).values)
            weights = e / e.sum(dim=1, keepdim=True)
            acc = torch.zeros(b, c, dtype=torch.float64)
            for n in range(k * k):
                y, xx = i + n // k - r, j + n % k - r
                if 0 <= y < h and 0 <= xx < w:
                    acc += weights[:, n : n + 1] * de[:, :, y, xx]
            if not gating:
                out[:, :, p, q] = acc
                continue
            gate = torch.sigmoid(gate_lr[:, :, i, j])  # (B, 1)
            detail = en[:, :, p, q]
            if "aligner.conv.weight" in sd:
                detail = detail @ sd["aligner.conv.weight"][:, :, 0, 0].T + sd["aligner.conv.bias"]
            out[:, :, p, q] = gate * detail + (1 - gate) * acc
    return out


def randomise(op: torch.nn.Module, seed: int, std: float = 0.4) -> None:
    """Replace every parameter by N(0, std^2) so that kernels and gate are far from uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in op.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)


def inputs(c: int, cg: int, s: int, lr: tuple[int, int], seed: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, *lr, generator=g, dtype=torch.float64).to(dtype)
    guide = torch.randn(2, cg, s * lr[0], s * lr[1], generator=g, dtype=torch.float64).to(dtype)
    return x, guide


# --------------------------------------------------------------------------------------------------
# forward against the reference
# --------------------------------------------------------------------------------------------------

CASES = [
    # scale, in_channels, guide_channels, options, LR size
    pytest.param(2, 4, 4, {}, (3, 4), id="x2"),
    pytest.param(3, 4, 4, {"up_kernel_size": 3}, (3, 3), id="x3-k3"),
    pytest.param(4, 3, 5, {}, (2, 3), id="x4-aligner"),
    pytest.param(8, 2, 2, {"up_kernel_size": 3}, (2, 2), id="x8-k3"),
    pytest.param(2, 3, 6, {"gating": False}, (3, 3), id="x2-no-gate"),
]


@pytest.mark.parametrize("aggregation", ["chunked", "naive"])
@pytest.mark.parametrize("name", ["fade", "fade_lite"])
@pytest.mark.parametrize(("scale", "c", "cg", "options", "lr"), CASES)
def test_matches_loop_reference_float64(
    name: str, scale: int, c: int, cg: int, options: dict, lr: tuple[int, int], aggregation: str
) -> None:
    op = upbench.create_operator(name, c, scale, guide_channels=cg, aggregation=aggregation, **options).double()
    randomise(op, seed=scale + c)
    x, guide = inputs(c, cg, scale, lr)
    k = options.get("up_kernel_size", 5)
    expected = fade_ref(x, guide, op.state_dict(), scale, k, name == "fade_lite", options.get("gating", True))
    out = op(x, guide)
    assert out.shape == (2, c, scale * lr[0], scale * lr[1])
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_float32_matches_reference(name: str) -> None:
    op = upbench.create_operator(name, 4, 2)
    randomise(op, seed=11)
    x, guide = inputs(4, 4, 2, (3, 4), dtype=torch.float32)
    expected = fade_ref(x, guide, op.state_dict(), 2, 5, name == "fade_lite")
    torch.testing.assert_close(op(x, guide).double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3, 4, 7, 16])
def test_nearest_up_is_the_official_nearest_interpolation(scale: int) -> None:
    t = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(
        nearest_up(t, scale), F.interpolate(t, scale_factor=scale, mode="nearest"), rtol=0, atol=0
    )


def test_gate_extremes_select_guide_or_reassembly() -> None:
    """A saturated gate returns the guide itself (g = 1) or the pure CARAFE reassembly (g = 0)."""
    op = upbench.create_operator("fade", 3, 2).double()
    randomise(op, seed=4)
    x, guide = inputs(3, 3, 2, (3, 3))
    with torch.no_grad():
        op.gate_generator.conv.weight.zero_()
        op.gate_generator.conv.bias.fill_(50.0)
        torch.testing.assert_close(op(x, guide), guide, rtol=0, atol=1e-12)
        op.gate_generator.conv.bias.fill_(-50.0)
        no_gate = upbench.create_operator("fade", 3, 2, gating=False).double()
        no_gate.load_state_dict({k: v for k, v in op.state_dict().items() if "gate" not in k}, strict=True)
        torch.testing.assert_close(op(x, guide), no_gate(x, guide), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "scale", "cg"), [("fade", 2, 2), ("fade_lite", 3, 2), ("fade", 2, 3)])
def test_gradcheck_float64(name: str, scale: int, cg: int) -> None:
    op = upbench.create_operator(name, 2, scale, guide_channels=cg, up_kernel_size=3).double()
    randomise(op, seed=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(1, cg, 2 * scale, 2 * scale, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x, guide), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# official parameters, aligner, initialisation, state dicts
# --------------------------------------------------------------------------------------------------


def official_shapes(name: str, c: int) -> dict[str, tuple[int, ...]]:
    """poppinace/fade FADE(c) / FADELite(c) with defaults (scale 2, up_kernel_size 5, embedding 64)."""
    emb = 25 if name == "fade_lite" else 64
    return {
        "gate_generator.conv.weight": (1, c, 1, 1),
        "gate_generator.conv.bias": (1,),
        "ker_generator.compressor_en.weight": (emb, c, 1, 1),
        "ker_generator.compressor_en.bias": (emb,),
        "ker_generator.compressor_de.weight": (emb, c, 1, 1),
        "ker_generator.content_encoder.weight": (25, 1 if name == "fade_lite" else 64, 3, 3),
        "ker_generator.content_encoder.bias": (25,),
    }


@pytest.mark.parametrize("scale", [2, 8])
@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_official_parameter_names_and_shapes(name: str, scale: int) -> None:
    op = upbench.create_operator(name, 16, scale)
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == official_shapes(name, 16)
    assert op.aligner is None


@pytest.mark.parametrize(("name", "count"), [("fade", 47514), ("fade_lite", 13332)])
def test_parameter_count_matches_the_papers_segformer_setting(name: str, count: int) -> None:
    # FADE +0.29M and FADE-Lite +80K for 6 modules at C=256 in the authors' SegFormer tables.
    shapes = official_shapes(name, 256)
    assert sum(math.prod(s) for s in shapes.values()) == count
    assert sum(p.numel() for p in upbench.create_operator(name, 256, 2).parameters()) == count


@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_aligner_only_when_channels_differ(name: str) -> None:
    same = upbench.create_operator(name, 8, 2, guide_channels=8)
    assert not any(k.startswith("aligner.") for k in same.state_dict())
    diff = upbench.create_operator(name, 8, 2, guide_channels=5)
    shapes = {k: tuple(v.shape) for k, v in diff.state_dict().items()}
    assert shapes["aligner.conv.weight"] == (8, 5, 1, 1) and shapes["aligner.conv.bias"] == (8,)
    assert shapes["ker_generator.compressor_en.weight"][1] == 5
    assert shapes["gate_generator.conv.weight"] == (1, 8, 1, 1)
    no_gate = upbench.create_operator(name, 8, 2, guide_channels=5, gating=False)
    assert not any(k.startswith(("aligner.", "gate_generator.")) for k in no_gate.state_dict())


@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_official_state_dict_loads_strictly_and_round_trips(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=g) for k, shape in official_shapes(name, 6).items()}
    op = upbench.create_operator(name, 6, 4)
    op.load_state_dict(official, strict=True)
    other = upbench.create_operator(name, 6, 4)
    other.load_state_dict(op.state_dict(), strict=True)
    x, guide = inputs(6, 6, 4, (2, 3), dtype=torch.float32)
    assert torch.equal(op(x, guide), other(x, guide))
    assert torch.equal(other.ker_generator.content_encoder.weight, official["ker_generator.content_encoder.weight"])


def test_initialisation_is_xavier_uniform_with_zero_bias() -> None:
    torch.manual_seed(0)
    op = upbench.create_operator("fade", 64, 2)
    for name, p in op.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        else:
            fan_out, fan_in = p.shape[0] * p[0, 0].numel(), p.shape[1] * p[0, 0].numel()
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert p.abs().max() <= bound, name
    w = op.ker_generator.content_encoder.weight
    assert abs(w.std().item() - math.sqrt(6 / (64 * 9 + 25 * 9)) / math.sqrt(3)) < 0.01


# --------------------------------------------------------------------------------------------------
# dtypes, autocast, errors, metadata
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_low_precision_forward_on_cpu(name: str, dtype: torch.dtype) -> None:
    op = upbench.create_operator(name, 8, 4)
    randomise(op, seed=5, std=0.2)
    x, guide = inputs(8, 8, 4, (3, 3), dtype=torch.float32)
    ref = op(x, guide)
    out = op.to(dtype)(x.to(dtype), guide.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_autocast_keeps_the_input_dtype(name: str) -> None:
    op = upbench.create_operator(name, 8, 2, guide_channels=4)
    randomise(op, seed=6, std=0.2)
    x, guide = inputs(8, 4, 2, (3, 3), dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(x, guide)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, op(x, guide), rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"up_kernel_size": 4}, "up_kernel_size"),
        ({"up_kernel_size": -1}, "up_kernel_size"),
        ({"aggregation": "fast"}, "aggregation"),
        ({"gating": "yes"}, "gating"),
    ],
)
@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_bad_options_are_rejected(name: str, options: dict, match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        upbench.create_operator(name, 8, 2, **options)


def test_bad_aggregation_rejected_by_the_constructor_too() -> None:
    with pytest.raises(InvalidOptionError, match="aggregation"):
        FADE(8, 2, aggregation="fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_bad_inputs_raise_input_shape_error(name: str) -> None:
    op = upbench.create_operator(name, 4, 2, guide_channels=3)
    x, guide = inputs(4, 3, 2, (3, 3), dtype=torch.float32)
    with pytest.raises(InputShapeError, match="guided and needs guide"):
        op(x)
    with pytest.raises(InputShapeError, match="guide_channels=3"):
        op(x, torch.randn(2, 4, 6, 6))
    with pytest.raises(InputShapeError, match="needs 6x6"):
        op(x, guide[..., :5, :])
    with pytest.raises(InputShapeError, match="in_channels=4"):
        op(torch.randn(2, 3, 3, 3), guide)


@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_metadata(name: str) -> None:
    info = upbench.operator_info(name)
    assert info.guided and info.scales is None and info.title.startswith("FADE")
    assert "poppinace/fade@" in info.code and "FADE_L2H.py" in info.code
    assert {"lr_window", "border", "align_corners"} <= set(info.conventions)
    text = " ".join(info.deviations)
    assert "nearest x s" in text and "Aligner" in text
    assert info.options == {"up_kernel_size": 5, "gating": True, "aggregation": "auto"}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", ["fade", "fade_lite"])
def test_cuda_matches_cpu(name: str) -> None:
    op = upbench.create_operator(name, 6, 4, guide_channels=5).double()
    randomise(op, seed=9)
    x, guide = inputs(6, 5, 4, (4, 5))
    x.requires_grad_(True)
    out = op(x, guide)
    out.square().sum().backward()
    xc = x.detach().to("cuda").requires_grad_(True)
    outc = op.to("cuda")(xc, guide.to("cuda"))
    outc.square().sum().backward()
    torch.testing.assert_close(outc.cpu(), out.detach())
    torch.testing.assert_close(xc.grad.cpu(), x.grad)
