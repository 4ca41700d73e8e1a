"""FeatUp JBU stack: float64 plain-loop reference of a stage, the stack composition, FeatUp's key list."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import upbench
from upbench.errors import InputShapeError
from upbench_operators._reassembly import reassemble
from upbench_operators.featup_jbu import JBULearnedRange

pytestmark = pytest.mark.usefixtures("one_thread")

#: ``JBUStack(feat_dim=384)`` keys and shapes in mhamilton723/FeatUp@6b5a6c0 featup/upsamplers.py (written
#: out from the class definition; FeatUp's checkpoints store them under the prefix ``upsampler.``).
_STAGE_KEYS = {
    "range_temp": (),
    "range_proj.0.weight": (32, 3, 1, 1),
    "range_proj.0.bias": (32,),
    "range_proj.3.weight": (32, 32, 1, 1),
    "range_proj.3.bias": (32,),
    "fixup_proj.0.weight": (49, 52, 1, 1),
    "fixup_proj.0.bias": (49,),
    "fixup_proj.3.weight": (49, 49, 1, 1),
    "fixup_proj.3.bias": (49,),
    "sigma_spatial": (),
}
OFFICIAL_KEYS = {
    **{f"up{k}.{name}": shape for k in range(1, 5) for name, shape in _STAGE_KEYS.items()},
    "fixup_proj.1.weight": (384, 384, 1, 1),
    "fixup_proj.1.bias": (384,),
}


def _reflect(t: int, n: int) -> int:
    return -t if t < 0 else (2 * (n - 1) - t if t >= n else t)


def _conv1x1(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    return torch.einsum("oi,bihw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias.view(1, -1, 1, 1)


def _mlp(x: torch.Tensor, seq: torch.nn.Sequential) -> torch.Tensor:
    """conv 1x1, GELU (erf), (dropout: identity in eval), conv 1x1."""
    hidden = _conv1x1(x, seq[0])
    return _conv1x1(0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2))), seq[3])


def stage_reference(stage: JBULearnedRange, source: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """FeatUp's JBULearnedRange.forward from its definition: float64, loops over pixels and window taps."""
    b, _, gh, gw = guidance.shape
    r, d = stage.radius, stage.diameter
    with torch.no_grad():
        proj = _mlp(guidance, stage.range_proj)
        temp = min(max(math.exp(stage.range_temp.item()), 1e-4), 1e4)
        sigma = stage.sigma_spatial.item()
        grid = [-1 + 2 * i / (d - 1) for i in range(d)]
        kernel = torch.zeros(b, d * d, gh, gw, dtype=torch.float64)
        for y in range(gh):
            for x in range(gw):
                logits = torch.stack(
                    [
                        temp * (proj[:, :, _reflect(y + i - r, gh), _reflect(x + j - r, gw)] * proj[:, :, y, x]).sum(1)
                        for i in range(d)
                        for j in range(d)
                    ],
                    dim=1,
                )
                spatial = torch.tensor(
                    [math.exp(-(grid[i] ** 2 + grid[j] ** 2) / (2 * sigma**2)) for i in range(d) for j in range(d)],
                    dtype=torch.float64,
                )
                k = logits.softmax(dim=1) * spatial
                kernel[:, :, y, x] = k / k.sum(1, keepdim=True).clamp(min=1e-7)
        kernel = kernel + 0.1 * _mlp(torch.cat([kernel, guidance], 1), stage.fixup_proj)
        hr = F.interpolate(source, (gh, gw), mode="bicubic", align_corners=False)
        out = torch.zeros(b, source.shape[1], gh, gw, dtype=torch.float64)
        for y in range(gh):
            for x in range(gw):
                for i in range(d):
                    for j in range(d):
                        tap = hr[:, :, _reflect(y + i - r, gh), _reflect(x + j - r, gw)]
                        out[:, :, y, x] += kernel[:, i * d + j, y, x].unsqueeze(1) * tap
    return out


def _randomise(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)


def test_stage_matches_float64_loop_reference() -> None:
    stage = JBULearnedRange(3, 5, 32).double().eval()
    _randomise(stage)
    source = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    guidance = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    out = stage(source, guidance)
    torch.testing.assert_close(out, stage_reference(stage, source, guidance), rtol=1e-10, atol=1e-10)


def test_adaptive_conv_is_featups_cpp_loop() -> None:
    """AdaptiveConv (FeatUp's C++ loop) on a reflect-padded input == reassemble at ratio 1 with reflect padding."""
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    filters = torch.randn(2, 5, 6, 7, 7, dtype=torch.float64)  # FeatUp's (B, H, W, I, J) layout
    padded = F.pad(x, [3] * 4, mode="reflect")
    expected = torch.zeros_like(x)
    for h in range(5):
        for w in range(6):
            for i in range(7):
                for j in range(7):
                    expected[:, :, h, w] += filters[:, h, w, i, j].unsqueeze(1) * padded[:, :, h + i, w + j]
    kernels = filters.permute(0, 3, 4, 1, 2).reshape(2, 49, 5, 6)
    torch.testing.assert_close(reassemble(x, kernels, 7, 1, padding_mode="reflect"), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("scale", "lr", "hr"), [(4, (2, 3), (8, 12)), (3, (2, 2), (5, 7))], ids=["x4", "any-size"])
def test_stack_is_pooled_stages_plus_fixup(scale: int, lr: tuple[int, int], hr: tuple[int, int]) -> None:
    torch.manual_seed(0)
    op = upbench.create_operator("featup_jbu", 4, scale).double().eval()
    _randomise(op)
    x = torch.randn(1, 4, *lr, dtype=torch.float64)
    guide = torch.randn(1, 3, *hr, dtype=torch.float64)
    source = x
    sizes = [(lr[0] * 2, lr[1] * 2), hr]
    for k, size in enumerate(sizes, start=1):
        source = stage_reference(getattr(op, f"up{k}"), source, F.adaptive_avg_pool2d(guide, size))
    expected = source + 0.1 * _conv1x1(source, op.fixup_proj[1])
    torch.testing.assert_close(op(x, guide), expected, rtol=1e-10, atol=1e-10)


def test_official_key_list_loads_strictly() -> None:
    op = upbench.create_operator("featup_jbu", 384, 16)
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == OFFICIAL_KEYS
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=g) for k, shape in OFFICIAL_KEYS.items()}
    op.load_state_dict(official, strict=True)
    assert torch.equal(op.up3.fixup_proj[3].weight, official["up3.fixup_proj.3.weight"])


def test_stages_follow_the_scale() -> None:
    assert [upbench.create_operator("featup_jbu", 8, s).stages for s in (2, 3, 4, 8, 14, 16)] == [1, 2, 2, 3, 4, 4]
    assert upbench.create_operator("featup_jbu", 8, 2).guide_channels == 3


def test_too_small_stage_is_rejected_in_one_line() -> None:
    op = upbench.create_operator("featup_jbu", 8, 2)
    with pytest.raises(InputShapeError, match=r"stage 1 is 2x6"):
        op(torch.randn(1, 8, 1, 3), torch.randn(1, 3, 2, 6))
