"""Every registered operator x scales {2, 4, 8, 16} follows the upbench operator interface.

New operators are covered automatically: the parametrisation comes from ``list_operators()``.
"""

from __future__ import annotations

import pytest
import torch

import upbench
from upbench.errors import UnsupportedScaleError
from upbench.testing import check_operator, make_inputs

OPERATORS = upbench.list_operators()
SCALES = (2, 4, 8, 16)
CASES = [
    pytest.param(name, s, id=f"{name}-x{s}")
    for name in OPERATORS
    for s in SCALES
    if upbench.operator_info(name).supports_scale(s)
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_conformance(name: str, scale: int) -> None:
    check_operator(name, scale)


@pytest.mark.parametrize("name", OPERATORS)
def test_guide_channels_may_differ(name: str) -> None:
    """Guided operators accept a guide whose channel count differs from x (e.g. ViT 384 vs stem 32)."""
    check_operator(name, 2, in_channels=32, guide_channels=16)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", OPERATORS)
def test_dtypes_preserved(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    op = upbench.create_operator(name, 32, 4, guide_channels=32).to(dtype)
    x, guide = make_inputs(op, dtype=dtype)
    with torch.no_grad():
        out = op(x, guide)
    assert out.dtype == dtype
    assert out.shape == (2, 32, 12, 20)
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", OPERATORS)
def test_autocast_cpu(name: str) -> None:
    """Under CPU autocast (bfloat16) every operator runs and returns finite values."""
    torch.manual_seed(0)
    op = upbench.create_operator(name, 32, 4, guide_channels=32)
    x, guide = make_inputs(op)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(x, guide)
    assert out.shape == (2, 32, 12, 20)
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", OPERATORS)
def test_bad_scales_rejected(name: str) -> None:
    for bad in (1, 0, 2.5, "4", True):
        with pytest.raises(UnsupportedScaleError, match=name):
            upbench.create_operator(name, 32, bad)


@pytest.mark.parametrize("name", OPERATORS)
def test_metadata_complete(name: str) -> None:
    info = upbench.operator_info(name)
    assert info.name == name and info.title
    assert info.code, f"{name}: metadata must name the code it mirrors"
    assert info.conventions, f"{name}: metadata must state its conventions"
    learnable = any(p.requires_grad for p in upbench.create_operator(name, 32, 2).parameters())
    assert learnable == info.learnable, f"{name}: learnable={info.learnable} but has parameters={learnable}"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", OPERATORS)
def test_cuda(name: str, dtype: torch.dtype) -> None:
    check_operator(name, 4, device="cuda")
    op = upbench.create_operator(name, 32, 4, guide_channels=32).to("cuda", dtype)
    x, guide = make_inputs(op, dtype=dtype, device="cuda")
    with torch.no_grad():
        out = op(x, guide)
    assert out.dtype == dtype and out.is_cuda and torch.isfinite(out.float()).all()
