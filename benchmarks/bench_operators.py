"""Memory-conscious aggregation versus the naive unfold version, side by side in one run.

For every operator with an ``aggregation`` option ("chunked", the default, and "naive", the
unfold formulation that materialises ``(B, C, k*k, H, W)``) this measures forward and
forward+backward time (median and IQR) and peak memory at the settings of issues 3 and 4:

* ``seg-s-x4``:  x 384x32x32, guide 32x128x128, batch 8, x4 (Segmenter-S, ReSFU's setting)
* ``x16-512``:   x 384x32x32 -> 512x512, guide 32 channels, batch 1 (ReSFU only by default)
* ``peer-x2``:   x 256x64x64 -> x2, guide 256x128x128, batch 4 (peers)

Usage::

    python benchmarks/bench_operators.py                      # everything, CPU
    python benchmarks/bench_operators.py --ops resfu --settings seg-s-x4 --iters 5
    python benchmarks/bench_operators.py --device cuda --json out.json

Each measurement is taken in a fresh subprocess so that the CPU peak (VmHWM) of one case
cannot leak into another. Ratios are chunked / naive from the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SETTINGS = {
    # name: (batch, in_channels, h, w, guide_channels, scale)
    "seg-s-x4": (8, 384, 32, 32, 32, 4),
    "x16-512": (1, 384, 32, 32, 32, 16),
    "peer-x2": (4, 256, 64, 64, 256, 2),
}
DEFAULT_PLAN = {
    "resfu": ["seg-s-x4", "x16-512"],
    "carafe": ["peer-x2", "seg-s-x4"],
    "fade": ["peer-x2", "seg-s-x4"],
    "fade_lite": ["peer-x2", "seg-s-x4"],
    "sapa": ["peer-x2", "seg-s-x4"],
    "sapa_g": ["peer-x2", "seg-s-x4"],
    "sapa_i": ["peer-x2", "seg-s-x4"],
}


def measure_one(op: str, setting: str, aggregation: str, mode: str, device: str, warmup: int, iters: int) -> dict:
    """Run in a subprocess: time and peak memory of one operator/aggregation/mode."""
    import torch

    import upbench
    from upbench.profiling import measure_latency, measure_peak_memory

    b, c, h, w, cg, s = SETTINGS[setting]
    torch.manual_seed(0)
    module = upbench.create_operator(op, c, s, guide_channels=cg, aggregation=aggregation).to(device)
    x = torch.randn(b, c, h, w, device=device, requires_grad=mode == "forward_backward")
    guide = torch.randn(b, cg, s * h, s * w, device=device, requires_grad=mode == "forward_backward")

    def step() -> None:
        if mode == "forward":
            with torch.no_grad():
                module(x, guide)
        else:
            module(x, guide).sum().backward()

    peak = measure_peak_memory(step, device=device)
    stats = measure_latency(step, device=device, warmup=warmup, iters=iters)
    return {
        "operator": op,
        "setting": setting,
        "aggregation": aggregation,
        "mode": mode,
        "device": device,
        "threads": torch.get_num_threads(),
        "median_ms": stats.median_ms,
        "iqr_ms": stats.iqr_ms,
        "n": stats.n,
        "peak_mib": None if peak is None else peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="*", default=list(DEFAULT_PLAN))
    parser.add_argument("--settings", nargs="*", default=None, help="override the settings of every operator")
    parser.add_argument("--modes", nargs="*", default=["forward", "forward_backward"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--_one", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        op, setting, agg, mode, device, warmup, iters = args._one
        print(json.dumps(measure_one(op, setting, agg, mode, device, int(warmup), int(iters))))
        return

    rows = []
    for op in args.ops:
        for setting in args.settings or DEFAULT_PLAN.get(op, ["seg-s-x4"]):
            for mode in args.modes:
                pair = {}
                for agg in ("chunked", "naive"):
                    cmd = [
                        sys.executable,
                        __file__,
                        "--_one",
                        op,
                        setting,
                        agg,
                        mode,
                        args.device,
                        str(args.warmup),
                        str(args.iters),
                    ]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                        pair[agg] = {"operator": op, "setting": setting, "aggregation": agg, "mode": mode, "error": err}
                    else:
                        pair[agg] = json.loads(proc.stdout.strip().splitlines()[-1])
                    rows.append(pair[agg])
                _print_pair(pair)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


def _print_pair(pair: dict) -> None:
    ch, nv = pair["chunked"], pair["naive"]
    head = f"{ch['operator']:<10} {ch['setting']:<9} {ch['mode']:<16}"
    if "error" in ch or "error" in nv:
        print(f"{head} error: {ch.get('error') or nv.get('error')}", flush=True)
        return
    t_ratio = ch["median_ms"] / nv["median_ms"]
    m_ratio = (ch["peak_mib"] / nv["peak_mib"]) if ch["peak_mib"] and nv["peak_mib"] else float("nan")
    print(
        f"{head} chunked {ch['median_ms']:9.1f} ms (IQR {ch['iqr_ms']:6.1f}) {ch['peak_mib']:8.0f} MiB | "
        f"naive {nv['median_ms']:9.1f} ms (IQR {nv['iqr_ms']:6.1f}) {nv['peak_mib']:8.0f} MiB | "
        f"time x{t_ratio:.2f}  memory x{m_ratio:.2f}  (n={ch['n']}, threads={ch['threads']})",
        flush=True,
    )


if __name__ == "__main__":
    main()
