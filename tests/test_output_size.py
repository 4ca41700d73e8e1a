"""Arbitrary output sizes: ``op(x, guide, output_size)`` for ``any_size`` operators, a one-line error for
the others, and x14 (ViT patch 14) for every operator that takes any integer scale."""

from __future__ import annotations

import pytest
import torch

import upbench
from upbench.errors import InputShapeError
from upbench.testing import check_operator, make_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

OPERATORS = upbench.list_operators()
ANY_SIZE = [n for n in OPERATORS if upbench.operator_info(n).any_size]
FIXED = [n for n in OPERATORS if not upbench.operator_info(n).any_size]
ANY_SCALE = [n for n in OPERATORS if upbench.operator_info(n).scales is None]


def _build(name: str, scale: int = 2):
    torch.manual_seed(0)
    return upbench.create_operator(name, 8, scale, guide_channels=3 if upbench.operator_info(name).guided else None)


def test_registry_declares_any_size_operators() -> None:
    assert {"bilinear", "nearest"} <= set(ANY_SIZE)
    assert "carafe" in FIXED


@pytest.mark.parametrize("name", ANY_SIZE)
@pytest.mark.parametrize(("lr", "hr"), [((4, 4), (14, 14)), ((5, 3), (11, 7))], ids=["x3.5", "odd"])
def test_any_size_operator_returns_the_requested_size(name: str, lr: tuple[int, int], hr: tuple[int, int]) -> None:
    op = _build(name)
    x = torch.randn(2, 8, *lr, requires_grad=True)
    guide = torch.randn(2, op.guide_channels or 8, *hr, requires_grad=True)
    out = op(x, guide, output_size=hr) if not op.info.guided else op(x, guide)
    assert out.shape == (2, 8, *hr) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if op.info.guided:  # the guide's size is the output size; output_size may repeat it
        assert torch.equal(op.eval()(x, guide, output_size=hr), op(x, guide))
        assert guide.grad is not None and guide.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ANY_SIZE)
def test_any_size_operator_default_size_is_unchanged(name: str) -> None:
    op = _build(name, scale=4).eval()
    x, guide = make_inputs(op)
    with torch.no_grad():
        assert torch.equal(op(x, guide), op(x, guide, output_size=(12, 20)))


@pytest.mark.parametrize("name", FIXED)
def test_fixed_size_operator_rejects_other_sizes_in_one_line(name: str) -> None:
    op = _build(name, scale=2).eval()
    x, guide = make_inputs(op)
    with torch.no_grad():
        assert torch.equal(op(x, guide, output_size=(6, 10)), op(x, guide))  # the integer multiple is fine
    with pytest.raises(InputShapeError, match=rf"operator '{name}' only produces scale x the input.*7x10") as err:
        op(x, guide, output_size=(7, 10))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [(0, 4), (4,), "8x8", (2.5, 4), (True, 4)])
def test_bad_output_size_is_rejected(bad) -> None:
    op = _build("bilinear")
    with pytest.raises(InputShapeError, match="output_size must be two positive integers"):
        op(torch.randn(1, 8, 3, 3), output_size=bad)


@pytest.mark.parametrize("name", [n for n in ANY_SIZE if upbench.operator_info(n).guided])
def test_guided_output_size_must_match_the_guide(name: str) -> None:
    op = _build(name)
    x, guide = make_inputs(op)
    with pytest.raises(InputShapeError, match="differs from the guide's size"):
        op(x, guide, output_size=(5, 5))


def _bilinear_reference(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Half-pixel-centre bilinear interpolation from the definition, float64 loops, border clamped."""
    _, _, h, w = x.shape
    big_h, big_w = size
    out = torch.zeros(x.shape[0], x.shape[1], big_h, big_w, dtype=torch.float64)
    for p in range(big_h):
        sy = max((p + 0.5) * h / big_h - 0.5, 0.0)
        y0 = min(int(sy), h - 1)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for q in range(big_w):
            sx = max((q + 0.5) * w / big_w - 0.5, 0.0)
            x0 = min(int(sx), w - 1)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = (1 - fx) * x[:, :, y0, x0] + fx * x[:, :, y0, x1]
            bottom = (1 - fx) * x[:, :, y1, x0] + fx * x[:, :, y1, x1]
            out[:, :, p, q] = (1 - fy) * top + fy * bottom
    return out


def test_bilinear_40x23_to_80x45_matches_the_definition() -> None:
    """The DySample issue #15 case: 40x23 -> 80x45 is not an integer ratio along the width."""
    x = torch.randn(1, 2, 40, 23, dtype=torch.float64)
    op = upbench.create_operator("bilinear", 2, 2).double()
    out = op(x, output_size=(80, 45))
    torch.testing.assert_close(out, _bilinear_reference(x, (80, 45)), rtol=1e-12, atol=1e-12)


def test_nearest_any_size_copies_floor_of_the_ratio() -> None:
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    out = upbench.create_operator("nearest", 3, 2).double()(x, output_size=(7, 9))
    rows = [int(p * 4 / 7) for p in range(7)]
    cols = [int(q * 5 / 9) for q in range(9)]
    assert torch.equal(out, x[:, :, rows][:, :, :, cols])


@pytest.mark.parametrize("name", ANY_SCALE)
def test_x14_vit_patch_ratio(name: str) -> None:
    check_operator(name, 14, in_channels=8, guide_channels=8)


@pytest.mark.parametrize("name", ["dysample", "dysample_plus"])
def test_dysample_any_size_is_bilinear_with_zero_offsets(name: str) -> None:
    op = upbench.create_operator(name, 8, 2).double().eval()
    torch.nn.init.zeros_(op.offset.weight)
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(op(x, output_size=(11, 9)), _bilinear_reference(x, (11, 9)), rtol=1e-10, atol=1e-10)


def test_dysample_any_size_path_at_the_integer_size_is_the_official_one() -> None:
    from upbench_operators.dysample import initial_positions, sample_points, sample_points_at

    torch.manual_seed(0)
    op = upbench.create_operator("dysample", 8, 3).double().eval()
    torch.nn.init.normal_(op.offset.weight, std=0.3)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # init_pos is stored in float32 (1/3 rounded); use the exact values
    try:
        op.init_pos.copy_(initial_positions(3, op.groups))
    finally:
        torch.set_default_dtype(previous)
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    offsets = op.offsets(x)
    official = sample_points(x, offsets, 3, op.groups)
    general = sample_points_at(x, offsets - op.init_pos, 3, op.groups, (12, 15))
    torch.testing.assert_close(general, official, rtol=1e-10, atol=1e-10)
