"""An ``ops`` cell: one operator profiled alone at one input size (the ``ops`` and ``cost`` suites)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def run_ops_cell(config: dict[str, Any], cell_dir: Path, device: str, progress: bool) -> list[dict[str, Any]]:
    """Params, GMACs, latency and peak memory of the operator (see :func:`upbench.profiling.profile_operator`)."""
    from upbench.profiling import profile_operator

    c = config
    b, ch, h, w, g = c["size"]
    ops = c["ops"]
    return profile_operator(
        c["operator"],
        scale=c["scale"],
        in_channels=ch,
        lr_size=(h, w),
        guide_channels=g,
        batch=b,
        device=device,
        dtype=getattr(torch, ops["dtype"]),
        options=c["options"],
        warmup=ops["warmup"],
        iters=ops["iters"],
        modes=tuple(ops["modes"]),
    )
