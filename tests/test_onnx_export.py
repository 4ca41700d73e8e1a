"""Deployment check: every operator exports to ONNX (opset 18) and onnxruntime matches PyTorch on CPU within
max(1e-4, 10 x the operator's own float32 error). One operator per mechanism runs by default; the others are
marked slow (about 55 s for the whole zoo on one thread)."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

import upbench
from upbench.deployment import onnx_check
from upbench.errors import UpbenchError
from upbench.registry import register_operator, unregister_operator
from upbench.upsampler import Upsampler

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = {"dysample", "featup_jbu"}  # grid_sample; reassembly + window similarity at ratio 1
CASES = [pytest.param(n, marks=() if n in QUICK else pytest.mark.slow) for n in upbench.list_operators()]


@pytest.mark.parametrize("name", CASES)
def test_operator_exports_and_onnxruntime_matches(name: str, tmp_path) -> None:
    result = onnx_check(name, path=tmp_path / f"{name}.onnx")
    assert result.status == "ok", f"{name}: {result}"
    assert result.opset >= 17 and (tmp_path / f"{name}.onnx").stat().st_size > 0
    assert result.max_abs_diff <= result.tolerance


def test_an_operator_that_cannot_export_is_reported_not_raised() -> None:
    @register_operator("_data_branch", title="data-dependent branch", guided=False, learnable=False, code="test")
    class DataBranch(Upsampler):
        def upsample(self, x, guide):  # a Python branch on tensor data: torch.export cannot trace it
            out = F.interpolate(x, scale_factor=self.scale, mode="nearest")
            return out * 2 if bool(x.sum() > 0) else out

    try:
        result = onnx_check("_data_branch")
    finally:
        unregister_operator("_data_branch")
    assert result.status == "failed" and result.error and result.max_abs_diff is None, result


def test_opset_below_17_is_rejected_in_one_line() -> None:
    with pytest.raises(UpbenchError, match="opset must be an integer >= 17"):
        onnx_check("bilinear", opset=16)
