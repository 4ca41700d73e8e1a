"""Shared test fixtures."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import torch

# Without a GPU, the Triton kernels (operators/_triton_*.py) are tested in Triton's CPU interpreter.
# It must be chosen before triton is first imported (triton.language decorates its own helpers at
# import time), so it is set here, before any test module loads. With CUDA the kernels compile.
if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test with one intra-op thread (stable timings of small ops on shared CI cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
