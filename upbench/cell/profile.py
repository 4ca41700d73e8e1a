"""Cost rows of a train cell's model: parameters, GMACs, peak memory and latency at batch 1."""

from __future__ import annotations

from typing import Any

import torch

from upbench.cell.model import operator_params
from upbench.results import row

#: The row of a train cell whose profiling failed: its status (``oom``/``failed``) and error.
PROFILE_METRIC = "profile"


def guarded_profile(model: torch.nn.Module, c: dict[str, Any], val_set: Any, device: str) -> list[dict[str, Any]]:
    """:func:`profile_model`'s rows, or, when it raises, one ``profile`` row with the status and
    error instead (the rows measured before profiling are worth keeping: see :mod:`upbench.cell.train`)."""
    from upbench.profiling.outcome import run_guarded

    outcome = run_guarded(lambda: profile_model(model, c, val_set, device))
    if outcome.status == "ok":
        return outcome.value
    return [row(PROFILE_METRIC, None, "", status=outcome.status, error=outcome.error)]


def profile_model(model: torch.nn.Module, c: dict[str, Any], val_set: Any, device: str) -> list[dict[str, Any]]:
    """Params of model and operator(s), GMACs and latency of the model at batch 1."""
    from upbench.profiling import count_macs, count_params, measure_latency

    prof = c["profile"]
    model.eval()
    image = val_set[0][0]
    size = prof["image_size"] or None
    h, w = (size, size) if size else tuple(image.shape[-2:])
    x = torch.randn(1, 3, h, w, device=device)
    p = count_params(model)
    rows = [row("params", p["total"], "count"), row("params_trainable", p["trainable"], "count")]
    rows.append(row("operator_params", operator_params(model), "count"))
    macs = count_macs(model, (x,))
    rows.append(row("gmacs", macs.total / 1e9, "GMAC"))
    if macs.unsupported:
        rows[-1]["error"] = "fvcore skipped ops: " + ", ".join(sorted(macs.unsupported))
    rows.append(row("image_size", h, "px"))
    rows += peak_memory_rows(lambda: model(x), device, prof["warmup"], prof["iters"])
    if prof["latency"]:
        with torch.no_grad():
            stats = measure_latency(lambda: model(x), device=device, warmup=prof["warmup"], iters=prof["iters"])
        for stat in ("median", "iqr", "q1", "q3"):
            rows.append(row("latency_forward", getattr(stats, f"{stat}_ms"), "ms", stat))
        rows.append(row("latency_forward", stats.n, "count", "n"))
    return rows


def peak_memory_rows(fn: Any, device: str, warmup: int, iters: int) -> list[dict[str, Any]]:
    """Peak memory of ``fn`` over ``iters`` calls after ``warmup`` untimed ones: median, IQR, q1, q3, n."""
    import numpy as np

    from upbench.profiling import measure_peak_memory

    with torch.no_grad():
        for _ in range(warmup):
            fn()
        peaks = [measure_peak_memory(fn, device=device) for _ in range(max(1, iters))]
    mib = np.array([p / 2**20 for p in peaks if p is not None])
    if mib.size == 0:
        return []
    q1, median, q3 = np.percentile(mib, [25, 50, 75])
    rows = [row("peak_memory", float(median), "MiB", "median")]
    rows += [row("peak_memory", float(v), "MiB", stat) for stat, v in (("iqr", q3 - q1), ("q1", q1), ("q3", q3))]
    return rows + [row("peak_memory", int(mib.size), "count", "n")]
