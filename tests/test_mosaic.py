"""The mosaic index on synthetic maps whose answer is known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from upbench.errors import InputShapeError
from upbench.reporting import mosaic_index
from upbench.reporting.mosaic import block_energies


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_nearest_upsampled_random_map_is_maximal(scale: int) -> None:
    low = _random(1, 5, 6, 7)
    up = F.interpolate(low, scale_factor=scale, mode="nearest")
    assert mosaic_index(up, scale) == pytest.approx(1.0, abs=1e-12)
    assert mosaic_index(up[0], scale) == pytest.approx(1.0, abs=1e-12)  # (C, H, W) too


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_bilinear_upsampled_smooth_map_is_low(scale: int) -> None:
    smooth = F.interpolate(_random(1, 4, 4, 4), size=(16, 16), mode="bicubic", align_corners=False)
    up = F.interpolate(smooth, scale_factor=scale, mode="bilinear", align_corners=False)
    assert abs(mosaic_index(up, scale)) < 0.1
    nearest = F.interpolate(smooth, scale_factor=scale, mode="nearest")
    assert mosaic_index(nearest, scale) > mosaic_index(up, scale) + 0.8


def test_constant_map_is_zero() -> None:
    assert mosaic_index(torch.full((3, 16, 16), 2.5), 4) == 0.0
    assert mosaic_index(torch.zeros(2, 3, 16, 16), 2) == 0.0


def test_hand_computed_energies() -> None:
    # 4x6 map, scale 2, every row [0, 0, 1, 1, 3, 3]: steps only across borders
    f = torch.tensor([[0.0, 0.0, 1.0, 1.0, 3.0, 3.0]]).repeat(4, 1)[None]
    # rows: borders j=1 (step 1) and j=3 (step 2) in 4 rows; columns: border j=1 (step 0) in 6 columns
    assert block_energies(f, 2) == pytest.approx((4 * (1 + 4) / 14, 0.0))
    assert mosaic_index(f, 2) == 1.0
    f[0, 0, 5] = 5.0  # row 0: the step after border j=3 is 2; column 5: the step before border j=1 is -2
    e_b, e_w = block_energies(f, 2)
    assert e_b == pytest.approx(20 / 14)
    assert e_w == pytest.approx(((0 + 2**2) / 2 + (2**2 + 0) / 2) / 14)
    assert mosaic_index(f, 2) == pytest.approx((20 - 4) / (20 + 4))


def test_variation_only_inside_blocks_is_minus_one() -> None:
    f = torch.zeros(1, 12, 12)
    f[..., 1::3] = 1.0  # the middle column of every 3-wide block: no difference crosses a border
    assert mosaic_index(f, 3) == pytest.approx(-1.0)


def test_invariant_to_affine_intensity_changes_and_between_extremes() -> None:
    low = _random(1, 3, 4, 4, seed=1)
    up = F.interpolate(low, scale_factor=4, mode="nearest") + 0.3 * _random(1, 3, 16, 16, seed=2)
    value = mosaic_index(up, 4)
    assert 0.0 < value < 1.0
    assert mosaic_index(5.0 * up - 7.0, 4) == pytest.approx(value, rel=1e-9)


def test_partial_blocks_and_image_edges_do_not_matter() -> None:
    up = F.interpolate(_random(1, 2, 5, 5), scale_factor=4, mode="nearest")[..., :-1, :-3]
    assert mosaic_index(up, 4) == pytest.approx(1.0)  # a partial last block is still a mosaic
    # bilinear (align_corners=False) leaves flat margins at the edges; the index ignores them
    bil = F.interpolate(_random(1, 2, 2, 2), scale_factor=8, mode="bilinear", align_corners=False)
    assert abs(mosaic_index(bil, 8)) < 1e-6


@pytest.mark.parametrize(
    ("feature", "scale", "message"),
    [
        (torch.zeros(16, 16), 2, "(C, H, W) or (B, C, H, W)"),
        (torch.zeros(1, 5, 5), 4, "has no 4x4 block border"),
        (torch.zeros(1, 8, 8), 1, "integer >= 2"),
        (torch.full((1, 8, 8), float("nan")), 2, "NaN"),
        ([[1.0]], 2, "torch.Tensor"),
    ],
)
def test_bad_inputs_are_named(feature: object, scale: int, message: str) -> None:
    with pytest.raises(InputShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mosaic_index(feature, scale)  # type: ignore[arg-type]
