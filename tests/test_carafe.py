"""CARAFE (mmcv CARAFEPack) against a float64 plain-loop reference written from the definition.

The reference below follows the paper and mmcv's kernels: 1x1 compressor, k_enc x k_enc content
encoder (zero padding), pixel shuffle of the encoder channels, softmax over each group's k_up^2 taps,
then for every HR pixel p the k_up x k_up LR window centred on floor(p/s), taps outside the LR map
contributing nothing while keeping their softmax weight.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

import upbench
from upbench.errors import InputShapeError, InvalidOptionError
from upbench_operators.carafe import CARAFE

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------
# float64 plain-loop reference
# --------------------------------------------------------------------------------------------------


def conv2d_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int = 1) -> torch.Tensor:
    """'Same'-size zero-padded convolution, one output pixel and one tap at a time."""
    b, _, h, w = x.shape
    co, _, kh, kw = weight.shape
    pad = (kh - 1) * dilation // 2
    out = torch.zeros(b, co, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            for dy in range(kh):
                for dx in range(kw):
                    y, xx = i + dy * dilation - pad, j + dx * dilation - pad
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, :, i, j] += x[:, :, y, xx] @ weight[:, :, dy, dx].T
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def carafe_ref(
    x: torch.Tensor, sd: dict[str, torch.Tensor], s: int, k: int, groups: int, dilation: int
) -> torch.Tensor:
    x = x.double()
    sd = {key: v.double() for key, v in sd.items()}
    comp = conv2d_ref(x, sd["channel_compressor.weight"], sd["channel_compressor.bias"])
    logits = conv2d_ref(comp, sd["content_encoder.weight"], sd["content_encoder.bias"], dilation)
    b, c, h, w = x.shape
    cg, r = c // groups, k // 2
    out = torch.zeros(b, c, s * h, s * w, dtype=torch.float64)
    for p in range(s * h):
        for q in range(s * w):
            (i, a), (j, bb) = divmod(p, s), divmod(q, s)
            for g in range(groups):
                # pixel_shuffle: encoder channel (g*k*k + n)*s*s + a*s + b holds tap n at sub-pixel (a, b)
                z = torch.stack([logits[:, (g * k * k + n) * s * s + a * s + bb, i, j] for n in range(k * k)], 1)
                e = torch.exp(z - z.max(dim=1, keepdim=True).values)
                weights = e / e.sum(dim=1, keepdim=True)
                for n in range(k * k):
                    y, xx = i + n // k - r, j + n % k - r
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, g * cg : (g + 1) * cg, p, q] += (
                            weights[:, n : n + 1] * x[:, g * cg : (g + 1) * cg, y, xx]
                        )
    return out


def randomise(op: torch.nn.Module, seed: int, std: float = 0.4) -> None:
    """Replace every parameter by N(0, std^2) so that the softmax kernels are far from uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in op.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)


# --------------------------------------------------------------------------------------------------
# forward against the reference
# --------------------------------------------------------------------------------------------------

CASES = [
    # scale, options, LR size
    pytest.param(2, {}, (3, 4), id="x2-defaults"),
    pytest.param(3, {"up_kernel": 3, "up_group": 2, "compressed_channels": 8}, (3, 4), id="x3-k3-g2"),
    pytest.param(4, {"encoder_kernel": 5, "encoder_dilation": 2, "compressed_channels": 8}, (3, 3), id="x4-enc5-dil2"),
    pytest.param(
        5,
        {"up_kernel": 3, "encoder_kernel": 2, "encoder_dilation": 2, "compressed_channels": 4},
        (2, 3),
        id="x5-k3-enc2-dil2",
    ),
]


@pytest.mark.parametrize("aggregation", ["chunked", "naive"])
@pytest.mark.parametrize(("scale", "options", "lr"), CASES)
def test_matches_loop_reference_float64(scale: int, options: dict, lr: tuple[int, int], aggregation: str) -> None:
    op = upbench.create_operator("carafe", 4, scale, aggregation=aggregation, **options).double()
    randomise(op, seed=scale)
    x = torch.randn(2, 4, *lr, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = carafe_ref(
        x,
        op.state_dict(),
        scale,
        options.get("up_kernel", 5),
        options.get("up_group", 1),
        options.get("encoder_dilation", 1),
    )
    out = op(x)
    assert out.shape == (2, 4, scale * lr[0], scale * lr[1])
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_float32_matches_reference() -> None:
    op = upbench.create_operator("carafe", 4, 3, compressed_channels=8)
    randomise(op, seed=7)
    x = torch.randn(1, 4, 3, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(op(x).double(), carafe_ref(x, op.state_dict(), 3, 5, 1, 1), rtol=1e-5, atol=1e-5)


def test_border_taps_are_zero_but_keep_their_weight() -> None:
    """Uniform kernels (zero encoder) on a constant map: output = fraction of taps inside the map."""
    op = upbench.create_operator("carafe", 1, 2, compressed_channels=2)
    with torch.no_grad():
        op.content_encoder.weight.zero_()
        op.content_encoder.bias.zero_()
    with torch.no_grad():
        out = op(torch.ones(1, 1, 4, 4))[0, 0]
    inside = torch.tensor([3, 4, 4, 3], dtype=torch.float32)  # 5-tap window rows/cols inside a 4-long map
    lr_expected = inside[:, None] * inside[None, :] / 25
    torch.testing.assert_close(out, lr_expected.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert out[0, 0] == pytest.approx(9 / 25) and out[3, 3] == pytest.approx(16 / 25)


def test_guide_is_ignored() -> None:
    op = upbench.create_operator("carafe", 3, 2, compressed_channels=4)
    x = torch.randn(1, 3, 3, 3)
    assert torch.equal(op(x), op(x, torch.randn(1, 3, 6, 6)))


# --------------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3])
def test_gradcheck_float64(scale: int) -> None:
    op = upbench.create_operator("carafe", 2, scale, up_kernel=3, encoder_kernel=1, compressed_channels=3).double()
    randomise(op, seed=3)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    weight = op.content_encoder.weight.detach().clone().requires_grad_(True)

    def fn(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return functional_call(op, {"content_encoder.weight": weight}, (x,), strict=False)

    assert torch.autograd.gradcheck(fn, (x, weight), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# official parameters, initialisation, state dicts
# --------------------------------------------------------------------------------------------------


def official_carafepack_shapes(channels: int, scale: int) -> dict[str, tuple[int, ...]]:
    """mmcv CARAFEPack(channels, scale_factor) with its defaults (up_kernel 5, group 1, encoder 3, 64)."""
    return {
        "channel_compressor.weight": (64, channels, 1, 1),
        "channel_compressor.bias": (64,),
        "content_encoder.weight": (25 * scale * scale, 64, 3, 3),
        "content_encoder.bias": (25 * scale * scale,),
    }


@pytest.mark.parametrize("scale", [2, 4])
def test_official_parameter_names_and_shapes(scale: int) -> None:
    op = upbench.create_operator("carafe", 16, scale)
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == official_carafepack_shapes(16, scale)


def test_parameter_count_matches_the_papers_segformer_setting() -> None:
    # 6 CARAFE modules at C=256, x2 add 0.44M params in the FADE/SAPA SegFormer tables.
    op = upbench.create_operator("carafe", 256, 2)
    assert sum(p.numel() for p in op.parameters()) == 256 * 64 + 64 + 64 * 9 * 100 + 100 == 74148


def test_official_state_dict_loads_strictly_and_round_trips() -> None:
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=g) for k, shape in official_carafepack_shapes(8, 3).items()}
    op = upbench.create_operator("carafe", 8, 3)
    op.load_state_dict(official, strict=True)
    other = upbench.create_operator("carafe", 8, 3)
    other.load_state_dict(op.state_dict(), strict=True)
    x = torch.randn(1, 8, 3, 3, generator=g)
    assert torch.equal(op(x), other(x))
    assert torch.equal(other.content_encoder.bias, official["content_encoder.bias"])


def test_initialisation_as_mmcv() -> None:
    torch.manual_seed(0)
    op = upbench.create_operator("carafe", 64, 2)
    assert torch.count_nonzero(op.channel_compressor.bias) == 0 and torch.count_nonzero(op.content_encoder.bias) == 0
    w = op.content_encoder.weight
    assert abs(w.std().item() - 1e-3) < 5e-5 and abs(w.mean().item()) < 5e-5
    bound = math.sqrt(6 / (64 + 64))  # xavier-uniform, fan_in = fan_out = 64 for the 1x1 compressor
    wc = op.channel_compressor.weight
    assert wc.abs().max() <= bound and abs(wc.std().item() - bound / math.sqrt(3)) < 0.1 * bound


# --------------------------------------------------------------------------------------------------
# dtypes, autocast, errors, metadata
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_forward_on_cpu(dtype: torch.dtype) -> None:
    op = upbench.create_operator("carafe", 8, 2, compressed_channels=8)
    randomise(op, seed=5, std=0.2)
    x = torch.randn(1, 8, 4, 4)
    ref = op(x)
    out = op.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


def test_autocast_keeps_the_input_dtype() -> None:
    op = upbench.create_operator("carafe", 8, 2, compressed_channels=8)
    randomise(op, seed=6, std=0.2)
    x = torch.randn(1, 8, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, op(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"up_kernel": 4}, "up_kernel"),
        ({"up_kernel": 0}, "up_kernel"),
        ({"encoder_kernel": 2}, "encoder_kernel=2 with encoder_dilation=1 does not keep the LR size"),
        ({"encoder_kernel": 0}, "encoder_kernel"),
        ({"up_group": 3}, "up_group=3 must divide in_channels=8"),
        ({"compressed_channels": 0}, "compressed_channels"),
        ({"aggregation": "fast"}, "aggregation"),
    ],
)
def test_bad_options_are_rejected(options: dict, match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        upbench.create_operator("carafe", 8, 2, **options)


def test_bad_aggregation_rejected_by_the_constructor_too() -> None:
    with pytest.raises(InvalidOptionError, match="aggregation"):
        CARAFE(8, 2, aggregation="fast")  # type: ignore[arg-type]


def test_bad_inputs_raise_input_shape_error() -> None:
    op = upbench.create_operator("carafe", 4, 2, compressed_channels=4)
    with pytest.raises(InputShapeError, match="in_channels=4"):
        op(torch.randn(1, 5, 3, 3))
    with pytest.raises(InputShapeError, match=r"\(B, C, h, w\)"):
        op(torch.randn(4, 3, 3))
    with pytest.raises(InputShapeError, match="floating-point"):
        op(torch.ones(1, 4, 3, 3, dtype=torch.long))


def test_metadata() -> None:
    info = upbench.operator_info("carafe")
    assert info.title == "CARAFE" and not info.guided and info.scales is None
    assert "open-mmlab/mmcv@" in info.code and "carafe.py" in info.code
    assert {"lr_window", "border", "align_corners"} <= set(info.conventions)
    assert info.deviations and info.options["up_kernel"] == 5 and info.options["compressed_channels"] == 64
    assert info.options["aggregation"] == "auto"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("aggregation", ["chunked", "naive"])
def test_cuda_matches_cpu(aggregation: str) -> None:
    op = upbench.create_operator("carafe", 8, 3, compressed_channels=8, aggregation=aggregation).double()
    randomise(op, seed=9)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64, requires_grad=True)
    out = op(x)
    out.square().sum().backward()
    xc = x.detach().to("cuda").requires_grad_(True)
    opc = op.to("cuda")
    outc = opc(xc)
    outc.square().sum().backward()
    torch.testing.assert_close(outc.cpu(), out.detach())
    torch.testing.assert_close(xc.grad.cpu(), x.grad)
