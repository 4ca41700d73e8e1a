"""The CPU fast paths of ReSFU, FADE and SAPA (issue 16) compute what the code before them computed.

Each ``legacy_*`` function below is a frozen copy of the forward pass as it was before the
speed-ups (plain NCHW autograd, no in-place ops, no fused ``lerp``). The tests swap it in with
``monkeypatch``, run the same module on the same float32 inputs, and compare the output and
the gradients of the inputs and of every parameter: they must agree within 1e-5 relative.
The float64 references of test_resfu.py, test_fade.py and test_sapa.py still check the mathematics.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import upbench
from upbench_operators import fade as fade_module
from upbench_operators import resfu as resfu_module
from upbench_operators._reassembly import reassemble, softmax_float32

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# Frozen copies of the code before issue 16
# ----------------------------------------------------------------------------------------------


def legacy_pcdc_forward(self, neighbours, centres):
    """``PCDCBlock.forward`` before issue 16: NCHW, centre term subtracted, bias added at HR."""
    pad = self.padding
    neighbours = F.pad(self.norm(neighbours), (pad, pad, pad, pad), mode="replicate")
    v = F.conv2d(neighbours, self.weight, dilation=self.dilation, groups=self.groups)
    centre_weight = self.weight.sum(dim=(-2, -1), keepdim=True)
    v = v - F.conv2d(self.norm(centres), centre_weight, groups=self.groups) + self.bias
    c = self.channel_compressor
    v = F.conv2d(F.relu(v), c[1].weight, c[1].bias, groups=self.groups).relu()
    v = F.group_norm(v, c[3].num_groups, c[3].weight, c[3].bias, c[3].eps)
    return F.conv2d(v, c[4].weight, c[4].bias)


def legacy_guided_filter_forward(self, guide, src):
    """``GuidedFilter.forward`` before issue 16: one box call per map, the count per image."""
    work = torch.promote_types(guide.dtype, torch.float32)
    with torch.autocast(device_type=guide.device.type, enabled=False):
        full, g, p = guide.to(work), guide.to(work), src.to(work)
        if self.scale > 1:
            g = F.interpolate(g, scale_factor=1.0 / self.scale, mode="nearest")
            p = F.interpolate(p, scale_factor=1.0 / self.scale, mode="nearest")
        count = self.box(torch.ones_like(g))
        mean_g, mean_p = self.box(g) / count, self.box(p) / count
        cov_gp = self.box(g * p) / count - mean_g * mean_p
        var_g = self.box(g * g) / count - mean_g * mean_g
        a = cov_gp / (var_g + self.eps)
        b = mean_p - a * mean_g
        mean_a, mean_b = self.box(a) / count, self.box(b) / count
        if self.scale > 1:
            mean_a = F.interpolate(mean_a, size=full.shape[-2:], mode="bilinear", align_corners=False)
            mean_b = F.interpolate(mean_b, size=full.shape[-2:], mode="bilinear", align_corners=False)
        return (mean_a * full + mean_b).to(guide.dtype)


def legacy_fade_upsample(self, x, guide):
    """``_FADEBase.upsample`` before issue 16 (NCHW kernel generator, gate as two products)."""
    k, s = self.up_kernel_size, self.scale
    gen = self.ker_generator
    enc = gen.content_encoder(gen.compressor_en(guide))
    dec = gen.content_encoder(gen.compressor_de(x))
    kernels = softmax_float32(enc + fade_module.nearest_up(dec, s), dim=1)
    up = reassemble(x, kernels, k, s, groups=1, padding_mode="zeros")
    if self.gate_generator is None:
        return up.to(x.dtype)
    gate = self.gate_generator(x, s)
    en = guide if self.aligner is None else self.aligner(guide)
    return (gate * en + (1 - gate) * up).to(x.dtype)


LEGACY = {
    "resfu": [
        (resfu_module.PCDCBlock, "forward", legacy_pcdc_forward),
        (resfu_module.GuidedFilter, "forward", legacy_guided_filter_forward),
    ],
    "fade": [(fade_module._FADEBase, "upsample", legacy_fade_upsample)],
}
LEGACY["fade_lite"] = LEGACY["fade"]


# ----------------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------------


def forward_and_grads(op, x, guide):
    """Output and the gradients of x, guide and every parameter for a fixed random cotangent."""
    x = x.clone().requires_grad_()
    guide = guide.clone().requires_grad_()
    op.zero_grad(set_to_none=True)
    out = op(x, guide)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out * cotangent).sum().backward()
    grads = {"x": x.grad, "guide": guide.grad}
    grads.update({name: p.grad for name, p in op.named_parameters()})
    return out.detach(), grads


def assert_close_relative(actual, expected, what):
    scale = expected.abs().max().item()
    rel = ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()
    assert rel < 1e-5, f"{what}: relative difference {rel:.2e}"
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * scale, msg=what)


CASES = [
    ("resfu", 2, {}),
    ("resfu", 4, {}),
    ("resfu", 4, {"pcdc_order": "v1", "neighbours": "coarse"}),
    ("fade", 4, {}),
    ("fade", 2, {"gating": False}),
    ("fade_lite", 4, {}),
]


@pytest.mark.parametrize(("name", "scale", "options"), CASES, ids=lambda v: str(v))
def test_fast_path_matches_the_frozen_code(monkeypatch, name, scale, options):
    torch.manual_seed(0)
    channels, guide_channels, h, w = 16, 8, 3, 4
    op = upbench.create_operator(name, channels, scale, guide_channels=guide_channels, **options)
    for p in op.parameters():  # away from the initialisation, so every path carries signal
        p.data.add_(0.2 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, channels, h, w, generator=g)
    guide = torch.randn(2, guide_channels, scale * h, scale * w, generator=g)

    out, grads = forward_and_grads(op, x, guide)
    assert out.is_contiguous()  # the layout the callers got before
    with monkeypatch.context() as m:
        for owner, attr, legacy in LEGACY[name]:
            m.setattr(owner, attr, legacy)
        ref_out, ref_grads = forward_and_grads(op, x, guide)

    assert_close_relative(out, ref_out, "output")
    assert grads.keys() == ref_grads.keys()
    largest = max(ref.norm().item() for ref in ref_grads.values())
    for key, ref in ref_grads.items():
        assert ref is not None and grads[key] is not None, key
        if ref.norm() < 1e-4 * largest:
            # Analytically zero (the PCDC GroupNorm bias enters neighbours and centres alike and
            # cancels): both sides are float32 rounding noise, so only their size is compared.
            assert grads[key].norm() < 1e-4 * largest, key
        else:
            assert_close_relative(grads[key], ref, f"gradient of {key}")


def test_the_frozen_code_is_really_swapped_in(monkeypatch):
    """Guard against a comparison of the new code with itself."""
    calls = []
    with monkeypatch.context() as m:
        for owner, attr, legacy in LEGACY["resfu"] + LEGACY["fade"]:
            m.setattr(owner, attr, lambda *a, _f=legacy, **k: calls.append(_f) or _f(*a, **k))
        x, guide = torch.randn(1, 16, 2, 2), torch.randn(1, 8, 4, 4)
        upbench.create_operator("resfu", 16, 2, guide_channels=8)(x, guide)
        upbench.create_operator("fade", 16, 2, guide_channels=8)(x, guide)
    assert {legacy_pcdc_forward, legacy_guided_filter_forward, legacy_fade_upsample} <= set(calls)
