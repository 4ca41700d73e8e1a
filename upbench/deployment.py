"""Deployment check: export an operator to ONNX and compare onnxruntime's output with PyTorch's on CPU.

:func:`onnx_check` builds the operator (seeded, eval mode), exports it with ``torch.onnx.export``
(the ``torch.export``-based exporter, ``opset >= 17``), runs the graph with onnxruntime's CPU provider
on random inputs (another draw than the one used to export) and reports the largest absolute
difference from PyTorch's float32 output.

Tolerance. Some operators are numerically sensitive in float32 (LoftUp's Fourier features reach
frequencies of ``e^10``, so their float32 rounding alone moves the output by ~1e-3), so one fixed
tolerance would either fail them or hide real errors in the others. The check therefore measures the
operator's own float32 error, ``max |op_float32(x) - op_float64(x)|`` in PyTorch, and accepts the ONNX
graph when it is within ``max(1e-4, 10 x that error)``: an exported graph that computes something else
(another interpolation mode, a dropped term) is off by orders of magnitude more.

onnx, onnxscript and onnxruntime are optional (``pip install -e ".[dev]"``); without them the check
raises one :class:`~upbench.errors.UpbenchError` line naming the missing package.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from upbench.errors import UpbenchError
from upbench.registry import create_operator, operator_info
from upbench.testing import make_inputs

MIN_OPSET = 17
DEFAULT_OPSET = 18
ABS_FLOOR = 1e-4
ERROR_FACTOR = 10.0


@dataclass(frozen=True)
class OnnxCheck:
    """Outcome of :func:`onnx_check`: ``status`` is ``ok``, ``mismatch`` or ``failed`` (export or run)."""

    operator: str
    opset: int
    status: str
    max_abs_diff: float | None
    tolerance: float | None
    float32_error: float | None
    error: str | None = None


def _require(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise UpbenchError(f"the ONNX check needs the package '{package}': pip install -e \".[dev]\"")


def onnx_check(
    name: str,
    *,
    in_channels: int = 8,
    scale: int = 2,
    lr_size: tuple[int, int] = (4, 5),
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    path: str | Path | None = None,
) -> OnnxCheck:
    """Export operator ``name`` to ONNX (``opset``) and compare onnxruntime with PyTorch on CPU.

    Guided operators get a guide with 3 channels (the RGB image of the task-agnostic family; any count
    works for the others). ``path``: where to write the ``.onnx`` file (a temporary file if ``None``).
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise UpbenchError(f"onnx_check: opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    for package in ("onnx", "onnxscript", "onnxruntime"):
        _require(package)
    import onnxruntime as ort

    info = operator_info(name)
    torch.manual_seed(seed)
    op = create_operator(name, in_channels, scale, guide_channels=3 if info.guided else None).eval()
    # Export with one draw of inputs and compare on another: a graph that froze its output into a
    # constant (a trace that lost the data flow) cannot pass.
    traced = make_inputs(op, lr_size=lr_size, seed=seed + 1)
    traced = traced if info.guided else traced[:1]
    x, guide = make_inputs(op, lr_size=lr_size, seed=seed)
    args = (x, guide) if info.guided else (x,)
    with torch.no_grad():
        expected = op(*args)
        exact = copy.deepcopy(op).double()(*(a.double() for a in args))
    float32_error = float((expected.double() - exact).abs().max())
    tolerance = max(ABS_FLOOR, ERROR_FACTOR * float32_error)
    names = ["x", "guide"][: len(args)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(path) if path is not None else Path(tmp) / f"{name}.onnx"
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(op, traced, str(target), opset_version=opset, dynamo=True, input_names=names)
            session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
            feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=False)}
            got = torch.from_numpy(session.run(None, feeds)[0])
    except Exception as exc:  # any export/runtime failure is a result, not a crash
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return OnnxCheck(name, opset, "failed", None, tolerance, float32_error, message[:300])
    if got.shape != expected.shape:
        error = f"onnxruntime output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}"
        return OnnxCheck(name, opset, "mismatch", None, tolerance, float32_error, error)
    diff = float((got - expected).abs().max())
    return OnnxCheck(name, opset, "ok" if diff <= tolerance else "mismatch", diff, tolerance, float32_error)
