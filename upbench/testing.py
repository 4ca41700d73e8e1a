"""Helpers for testing operators: random inputs of the right shapes and a conformance check.

Third-party operator authors can call :func:`check_operator` in their own test suites to verify
that a plugin follows the upbench interface (shapes, dtypes, gradients, determinism, errors).
"""

from __future__ import annotations

import torch
from torch import Tensor

from upbench.errors import InputShapeError
from upbench.registry import create_operator, operator_info
from upbench.upsampler import Upsampler


def make_inputs(
    op: Upsampler,
    *,
    batch: int = 2,
    lr_size: tuple[int, int] = (3, 5),
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    requires_grad: bool = False,
) -> tuple[Tensor, Tensor]:
    """Random ``(x, guide)`` that fit ``op``: x ``(B, C, h, w)`` and guide ``(B, C_g, s*h, s*w)``.

    Unguided operators get a guide with ``C`` channels (they must ignore it).
    """
    g = torch.Generator().manual_seed(seed)
    h, w = lr_size
    s = op.scale
    cg = op.guide_channels or op.in_channels
    x = torch.randn(batch, op.in_channels, h, w, generator=g, dtype=torch.float64)
    guide = torch.randn(batch, cg, s * h, s * w, generator=g, dtype=torch.float64)
    x = x.to(device=device, dtype=dtype).requires_grad_(requires_grad)
    guide = guide.to(device=device, dtype=dtype).requires_grad_(requires_grad)
    return x, guide


def check_operator(
    name: str,
    scale: int,
    *,
    in_channels: int = 32,
    guide_channels: int | None = 32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> None:
    """Assert that operator ``name`` follows the upbench interface at ``scale``.

    Checks the output shape, dtype and device; that gradients reach ``x``, the guide (guided
    operators) and every trainable parameter; that eval mode is deterministic; that unguided
    operators ignore the guide; that guided ``any_size`` operators return the guide's size; and that
    bad inputs raise :class:`InputShapeError`.
    Raises ``AssertionError`` naming the first violation.
    """
    info = operator_info(name)
    torch.manual_seed(seed)
    op = create_operator(name, in_channels, scale, guide_channels=guide_channels).to(device)
    x, guide = make_inputs(op, device=device, seed=seed, requires_grad=True)
    out = op(x, guide)
    b, c, h, w = x.shape
    expected = (b, c, scale * h, scale * w)
    assert tuple(out.shape) == expected, f"{name} x{scale}: output {tuple(out.shape)}, expected {expected}"
    assert out.dtype == x.dtype, f"{name}: output dtype {out.dtype} != input dtype {x.dtype}"
    assert out.device == x.device, f"{name}: output on {out.device}, input on {x.device}"
    assert torch.isfinite(out).all(), f"{name} x{scale}: non-finite output"

    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, f"{name} x{scale}: no gradient reaches x"
    if info.guided:
        assert guide.grad is not None and torch.isfinite(guide.grad).all(), f"{name}: no gradient reaches guide"
        assert guide.grad.abs().sum() > 0, f"{name} x{scale}: guide gradient is all zero"
    for pname, p in op.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} x{scale}: parameter '{pname}' gets no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} x{scale}: parameter '{pname}' has non-finite gradient"

    op.eval()
    with torch.no_grad():
        a, bb = op(x, guide), op(x, guide)
        assert torch.equal(a, bb), f"{name} x{scale}: eval mode is not deterministic"
        if not info.guided:
            assert torch.equal(op(x), a), f"{name}: unguided operator output depends on the guide"

    def expect_error(what: str, *args: object) -> None:
        try:
            op(*args)
        except InputShapeError:
            return
        raise AssertionError(f"{name}: {what} did not raise InputShapeError")

    x0 = x.detach()
    expect_error("3-D input", x0[0], guide)
    expect_error("wrong input channels", torch.randn(b, c + 1, h, w, device=device), guide)
    if info.guided:
        expect_error("missing guide", x0)
        if info.any_size:  # any guide size is valid and sets the output size
            other = guide.detach()[..., :-1, :]
            with torch.no_grad():
                shape = tuple(op(x0, other).shape)
            assert shape == (b, c, *other.shape[-2:]), f"{name}: a guide of another size gave output {shape}"
        else:
            expect_error("guide of the wrong size", x0, guide.detach()[..., :-1, :])
        expect_error("guide with wrong channels", x0, torch.cat([guide.detach(), guide.detach()[:, :1]], 1))
        expect_error("guide of another dtype", x0, guide.detach().double())
