"""guided_bilinear (the matched guide control) and the ``guide_passthrough`` metadata of every operator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import upbench
from upbench.registry import register_operator
from upbench.upsampler import Upsampler

pytestmark = pytest.mark.usefixtures("one_thread")


def _bilinear_reference(x: np.ndarray, s: int) -> np.ndarray:
    """Half-pixel bilinear upsampling from its definition, one output pixel at a time (float64)."""
    b, c, h, w = x.shape
    out = np.zeros((b, c, h * s, w * s))

    def taps(p: int, size: int) -> tuple[int, int, float]:
        u = min(max((p + 0.5) / s - 0.5, 0.0), size - 1)
        lo = math.floor(u)
        return lo, min(lo + 1, size - 1), u - lo

    for i in range(h * s):
        y0, y1, fy = taps(i, h)
        for j in range(w * s):
            x0, x1, fx = taps(j, w)
            top = (1 - fx) * x[..., y0, x0] + fx * x[..., y0, x1]
            bottom = (1 - fx) * x[..., y1, x0] + fx * x[..., y1, x1]
            out[..., i, j] = (1 - fy) * top + fy * bottom
    return out


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_guided_bilinear_equals_its_definition(scale: int) -> None:
    torch.manual_seed(scale)
    op = upbench.create_operator("guided_bilinear", 5, scale, guide_channels=3).double()
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    guide = torch.randn(2, 3, 4 * scale, 3 * scale, dtype=torch.float64)
    weight = op.proj.weight.detach().numpy()[:, :, 0, 0]
    bias = op.proj.bias.detach().numpy()
    projected = np.einsum("oc,bchw->bohw", weight, guide.numpy()) + bias[None, :, None, None]
    expected = _bilinear_reference(x.numpy(), scale) + projected
    with torch.no_grad():
        np.testing.assert_allclose(op(x, guide).numpy(), expected, rtol=0, atol=1e-12)


def test_guided_bilinear_without_guide_content_is_bilinear() -> None:
    op = upbench.create_operator("guided_bilinear", 4, 4, guide_channels=2)
    with torch.no_grad():
        op.proj.weight.zero_()
        op.proj.bias.zero_()
    bilinear = upbench.create_operator("bilinear", 4, 4)
    x, guide = torch.randn(1, 4, 3, 5), torch.randn(1, 2, 12, 20)
    assert torch.equal(op(x, guide), bilinear(x))


@pytest.mark.parametrize("name", upbench.list_operators())
def test_guide_passthrough_flag_matches_behaviour(name: str) -> None:
    """The flag says whether the output can carry guide content directly: with x = 0 every
    operator that only weights LR features returns something independent of the guide."""
    info = upbench.operator_info(name)
    scale = 2 if info.supports_scale(2) else min(s for s in (3, 4, 8) if info.supports_scale(s))
    torch.manual_seed(0)
    op = upbench.create_operator(name, 8, scale, guide_channels=8 if info.guided else None).eval()
    x = torch.zeros(1, 8, 4, 4)
    g1, g2 = torch.randn(2, 1, 8, 4 * scale, 4 * scale)
    with torch.no_grad():
        differs = not torch.allclose(op(x, g1), op(x, g2), atol=1e-6)
    assert differs == info.guide_passthrough, f"{name}: guide_passthrough={info.guide_passthrough}"


def test_passthrough_needs_a_guided_operator() -> None:
    with pytest.raises(ValueError, match="guide_passthrough=True needs guided=True"):

        @register_operator("fake_passthrough", title="x", guided=False, guide_passthrough=True)
        class Fake(Upsampler):  # pragma: no cover - never registered
            def upsample(self, x, guide):  # noqa: ANN001, ANN202
                return x


@pytest.mark.parametrize("suite_name", ["quick", "plain", "hierarchical", "ratio", "ablation"])
def test_every_shipped_setting_with_a_guided_operator_runs_the_control(suite_name: str) -> None:
    from upbench.suite import load_suite

    settings: dict[tuple, set[str]] = {}
    for cell in load_suite(suite_name).cells():
        c = cell.config
        key = (c["architecture"], c["protocol"], c["scale"], c["seed"])
        settings.setdefault(key, set()).add(c["operator"])
    assert settings
    for key, operators in settings.items():
        if any(upbench.operator_info(op).guided for op in operators):
            assert "guided_bilinear" in operators, f"{suite_name} {key}: guided operators without guided_bilinear"
