"""Choice of the aggregation implementation shared by CARAFE, FADE, SAPA and ReSFU.

Operators take ``aggregation`` in :data:`AGGREGATIONS`:

* ``"auto"`` (default): ``"chunked"`` on every device. On an H100 the chunked path ran 1.6-22x
  faster than the Triton kernels forward+backward at every setting of ``benchmarks/gpu_check.py``
  (record: ``reports/benchmarks/gpu_check_nvidia-h100-80gb-hbm3_20261206T105523Z.json``), while
  the kernels used 2.1-7.5x less peak memory; choose ``"triton"`` where memory, not time, binds.
* ``"chunked"``: the memory-conscious pure-PyTorch path (``_reassembly``, ``_fns``), the reference.
* ``"naive"``: the unfold form that materialises ``(B, C, k*k, H, W)``; benchmark baseline only.
* ``"triton"``: the fused Triton kernels (``_triton_reassembly``, ``_triton_fns``); CUDA tensors
  only (or Triton's CPU interpreter, ``TRITON_INTERPRET=1``, as the tests use).

The Triton modules are imported lazily, on the first call that needs them, so that importing the
zoo never imports Triton. Under ``torch.jit.trace`` (fvcore's MAC counting) ``"auto"`` and
``"triton"`` run ``"chunked"``: the same arithmetic, in ops the counter sees (a Triton launch would
be an opaque Python op, counted as 0).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor

from upbench.errors import InvalidOptionError

from ._fns import fns_aggregate, fns_aggregate_naive
from ._reassembly import reassemble, reassemble_naive, softmax_float32

Aggregation = Literal["auto", "chunked", "naive", "triton"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)


@functools.cache
def triton_available() -> bool:
    """True when the ``triton`` package is installed (it is not imported here)."""
    return importlib.util.find_spec("triton") is not None


def check_aggregation(operator: str, value: object) -> None:
    """Raise :class:`InvalidOptionError` unless ``value`` is an aggregation this machine can run."""
    if value not in AGGREGATIONS:
        raise InvalidOptionError(
            f"operator '{operator}': option 'aggregation' must be one of {AGGREGATIONS}, got {value!r}"
        )
    if value == "triton" and not triton_available():
        raise InvalidOptionError(
            f"operator '{operator}': aggregation='triton' needs the triton package (pip install triton); "
            "use 'auto' to fall back to 'chunked'"
        )


def resolve(aggregation: str, x: Tensor) -> str:
    """The implementation ``aggregation`` selects for the LR feature ``x``: chunked, naive or triton."""
    if aggregation in ("auto", "triton") and torch.jit.is_tracing():
        return "chunked"
    if aggregation != "auto":
        return aggregation
    return "chunked"  # measured faster than the Triton kernels on an H100 (module docstring)


def reassembly(aggregation: str, x: Tensor) -> Callable[..., Tensor]:
    """The reassembly function (``reassemble``'s signature) that ``aggregation`` selects for ``x``."""
    chosen = resolve(aggregation, x)
    if chosen == "triton":
        from ._triton_reassembly import reassemble_triton

        return reassemble_triton
    return reassemble_naive if chosen == "naive" else reassemble


def fns_aggregation(aggregation: str, x: Tensor) -> Callable[..., Tensor]:
    """The FNS aggregation (``fns_aggregate``'s signature) that ``aggregation`` selects for ``x``."""
    chosen = resolve(aggregation, x)
    if chosen == "triton":
        from ._triton_fns import fns_aggregate_triton

        return fns_aggregate_triton
    return fns_aggregate_naive if chosen == "naive" else fns_aggregate


def softmax_reassemble(
    aggregation: str, x: Tensor, logits: Tensor, kernel_size: int, scale: int, *, groups: int = 1
) -> Tensor:
    """``reassemble(x, softmax over each group's k*k taps of logits)`` with zero padding.

    The Triton path fuses the softmax into the reassembly kernels; the others take
    :func:`softmax_float32` first. The result is in ``x``'s dtype.
    """
    if resolve(aggregation, x) == "triton":
        from ._triton_reassembly import reassemble_triton

        return reassemble_triton(x, logits, kernel_size, scale, groups=groups, normalize=True)
    b, _, height, width = logits.shape
    kernels = softmax_float32(logits.view(b, groups, -1, height, width), dim=2).view(b, -1, height, width)
    return reassembly(aggregation, x)(x, kernels, kernel_size, scale, groups=groups).to(x.dtype)
