"""Shared test fixtures."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Without a GPU, the Triton kernels (operators/_triton_*.py) are tested in Triton's CPU interpreter.
# It must be chosen before triton is first imported (triton.language decorates its own helpers at
# import time), so it is set here, before any test module loads. With CUDA the kernels compile.
if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist (the README's test command runs `-n 2` on 2 cores) each worker, and every
# process a test starts (CLI runs, Ray and submitit workers, DDP ranks), uses one intra-op thread:
# two workers with torch's default of one thread per core oversubscribe the cores, and spinning
# OpenMP threads made the suite several times slower. Tests that need a thread count set it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test with one intra-op thread (stable timings of small ops on shared CI cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def ade(tmp_path: Path) -> Path:
    """A two-image ADE20K folder (48x64 images; class 0 covers 87.5 % of each label)."""
    base = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    for split, n in (("training", 2), ("validation", 1)):
        for i in range(n):
            stem = f"ADE_{split[:5]}_{i:08d}"
            (base / "images" / split).mkdir(parents=True, exist_ok=True)
            (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
                base / "images" / split / f"{stem}.jpg"
            )
            label = np.full((48, 64), 1, dtype=np.uint8)  # class 0 covers 87.5% ...
            label[:, 56:] = 2  # ... class 1 the rest: most crops are dominated by one class
            Image.fromarray(label).save(base / "annotations" / split / f"{stem}.png")
    return tmp_path
