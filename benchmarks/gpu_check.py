"""One-shot GPU check (issue 18): tests, ops suite, aggregation timings, an AMP cell, one record.

Run on a machine with one CUDA GPU (``bash benchmarks/gpu_check.sh`` prepares the environment and
calls this), in at most about 8 minutes:

1. every ``cuda``-marked test and ``tests/test_triton_kernels.py`` (compiled kernels on the GPU);
2. the ``ops`` suite's GPU settings (Segmenter-S x4 at batch 1 and 8, x16 to 512x512);
3. Triton vs chunked vs naive aggregation (median and IQR of CUDA-event latency, peak memory),
   forward and forward+backward, at the settings of ``benchmarks/bench_operators.py`` (Segmenter-S
   x4 batch 8, x16 to 512x512 batch 1, the peer x2 setting), for the softmax-fused reassembly of
   FADE/SAPA (k=5) and ReSFU's FNS (k=3); the Triton output is checked against the chunked one,
   and the forward is compared with the memory-bandwidth floor (bytes of the LR feature, kernel
   weights and HR output over the device bandwidth measured by a device-to-device copy);
4. mmcv's CUDA CARAFE side by side with the Triton reassembly where ``mmcv.ops`` imports (the
   record says why not otherwise);
5. one short AMP training cell (``quick`` suite, ReSFU, plain x4 seed 0, ``train.amp=true``).

It writes one JSON record to ``reports/benchmarks/gpu_check_<device>_<UTC time>.json`` (and a copy
to ``$OUT`` when that is set) with device, driver, torch/triton versions and commit, and prints a
short summary. ``--dry-run`` runs on CPU: it prints the plan, checks the imports and runs the
timing code on tiny shapes (chunked and naive; Triton too under ``TRITON_INTERPRET=1``), and
writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_operators import SETTINGS  # noqa: E402

from upbench.profiling import environment, measure_latency, measure_peak_memory  # noqa: E402
from upbench_operators._aggregation import fns_aggregation, softmax_reassemble  # noqa: E402

BUDGET_S = 480
KERNELS = {"reassembly_softmax": 5, "fns": 3}  # kernel size of FADE/SAPA's and ReSFU's aggregation
IMPLS = ("triton", "chunked", "naive")
MODES = ("forward", "forward_backward")
TINY = {"tiny-x3": (1, 8, 4, 4, 8, 3)}  # dry-run setting (any integer scale)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd`` from the repository root; return exit code, seconds and the output's tail."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, timeout))
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        parts = [p.decode(errors="replace") if isinstance(p, bytes) else p for p in (e.stdout, e.stderr) if p]
        code, out = "timeout", "".join(parts)
    return {
        "cmd": " ".join(cmd),
        "returncode": code,
        "seconds": round(time.perf_counter() - t0, 1),
        "tail": out[-4000:],
    }


def _pytest_counts(tail: str) -> dict:
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail)}
    return counts


# ----------------------------------------------------------------------------- environment
def gpu_environment(device: str) -> dict:
    env = environment(device)
    env["commit"] = os.environ.get("UPBENCH_COMMIT") or env.get("git_commit") or "unknown"
    try:
        import triton

        env["triton_version"] = triton.__version__
    except ImportError as e:
        env["triton_version"] = None
        env["triton_error"] = str(e)
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"]
        env["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        env["driver_version"] = env["nvidia_smi"].split(",")[0].strip() or None
    except (OSError, subprocess.SubprocessError) as e:
        env["driver_version"] = None
        env["nvidia_smi"] = f"unavailable: {e}"
    return env


def bandwidth_gbs(device: str) -> float | None:
    """Device memory bandwidth (GB/s, bytes read + written) of a 1 GiB device-to-device copy."""
    if not device.startswith("cuda"):
        return None
    buffers = torch.empty(2, 1 << 30, dtype=torch.uint8, device=device)
    stats = measure_latency(lambda: buffers[1].copy_(buffers[0]), device=device, warmup=3, iters=10)
    buffers = None
    torch.cuda.empty_cache()
    return 2 * (1 << 30) / (stats.median_ms * 1e-3) / 1e9


# ----------------------------------------------------------------------------- aggregation timing
def _aggregation_inputs(kind: str, setting: tuple, dtype: torch.dtype, device: str, seed: int = 0):
    b, c, h, w, _, s = setting
    k = KERNELS[kind]
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, device=device, dtype=dtype)
    weights = torch.randn(b, k * k, s * h, s * w, generator=g, device=device, dtype=dtype)
    if kind == "fns":
        weights = weights.float().softmax(1).to(dtype)
    return x, weights, k, s


def _aggregation_fn(kind: str, impl: str, x, weights, k: int, s: int) -> Callable:
    if kind == "fns":
        return lambda a, wt: fns_aggregation(impl, a)(a, wt, k, s)
    return lambda a, wt: softmax_reassemble(impl, a, wt, k, s)


def _work(fn: Callable, x, weights, mode: str) -> Callable:
    if mode == "forward":

        def forward():
            with torch.no_grad():
                return fn(x, weights)

        return forward
    xg, wg = x.detach().requires_grad_(), weights.detach().requires_grad_()
    grad = torch.randn(x.shape[0], x.shape[1], weights.shape[2], weights.shape[3], device=x.device, dtype=x.dtype)

    def forward_backward():
        xg.grad = wg.grad = None
        fn(xg, wg).backward(grad)

    return forward_backward


def _bytes_floor(x, weights, scale: int) -> int:
    """Bytes the forward must move at least: read x and the weights once, write the output once."""
    out = x.numel() * scale * scale * x.element_size()
    return x.numel() * x.element_size() + weights.numel() * weights.element_size() + out


def bench_aggregation(
    device: str, settings: dict, bandwidth: float | None, deadline: float, *, iters: int, impls: tuple = IMPLS
) -> list:
    """One row per setting x kernel x dtype x implementation: latency, IQR, peak memory, floor."""
    rows = []
    for name, setting in settings.items():
        dtypes = (torch.float32, torch.float16) if name == "seg-s-x4" or name in TINY else (torch.float32,)
        for kind in KERNELS:
            for dtype in dtypes:
                x, weights, k, s = _aggregation_inputs(kind, setting, dtype, device)
                reference = _aggregation_fn(kind, "chunked", x, weights, k, s)(x, weights)
                for impl in impls if dtype == torch.float32 else [i for i in impls if i != "naive"]:
                    fn = _aggregation_fn(kind, impl, x, weights, k, s)
                    row = {"setting": name, "shape": list(setting), "kind": kind, "kernel_size": k, "impl": impl}
                    row["dtype"] = str(dtype).replace("torch.", "")
                    try:
                        if impl != "chunked":
                            err = (fn(x, weights).float() - reference.float()).abs().max().item()
                            row["max_abs_err_vs_chunked"] = err / max(reference.float().abs().max().item(), 1e-12)
                        for mode in MODES:
                            if time.monotonic() > deadline:
                                row[f"{mode}_status"] = "skipped: time budget spent"
                                continue
                            work = _work(fn, x, weights, mode)
                            stats = measure_latency(work, device=device, warmup=3, iters=iters)
                            row[f"{mode}_median_ms"] = stats.median_ms
                            row[f"{mode}_iqr_ms"] = stats.iqr_ms
                            row[f"{mode}_n"] = stats.n
                            peak = measure_peak_memory(work, device=device)
                            row[f"{mode}_peak_mib"] = None if peak is None else peak / 2**20
                            row[f"{mode}_status"] = "ok"
                    except torch.cuda.OutOfMemoryError as e:
                        row["status"] = f"oom: {str(e).splitlines()[0]}"
                    except Exception as e:  # noqa: BLE001 - recorded, the check goes on
                        row["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    floor = _bytes_floor(x, weights, s)
                    row["floor_bytes"] = floor
                    if bandwidth:
                        row["floor_forward_ms"] = floor / (bandwidth * 1e9) * 1e3
                        if "forward_median_ms" in row:
                            row["forward_over_floor"] = row["forward_median_ms"] / row["floor_forward_ms"]
                    rows.append(row)
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
                del x, weights, reference
    return rows


def targets(rows: list, official: dict) -> dict:
    """Item 5 of issue 18, read off the rows (a benchmark record, not a test)."""

    def pick(setting, kind, impl, dtype="float32"):
        for r in rows:
            if (r["setting"], r["kind"], r["impl"], r["dtype"]) == (setting, kind, impl, dtype):
                return r
        return {}

    out = {}
    for kind in KERNELS:
        tri, chk = pick("seg-s-x4", kind, "triton"), pick("seg-s-x4", kind, "chunked")
        if "forward_backward_median_ms" in tri and "forward_backward_median_ms" in chk:
            speedup = chk["forward_backward_median_ms"] / tri["forward_backward_median_ms"]
            out[f"{kind}_seg_s_x4_fb_speedup_vs_chunked"] = speedup
            out[f"{kind}_seg_s_x4_fb_speedup_at_least_3x"] = speedup >= 3
    ratios = [r["forward_over_floor"] for r in rows if r["impl"] == "triton" and "forward_over_floor" in r]
    if ratios:
        out["triton_forward_over_floor_max"] = max(ratios)
        out["triton_forward_within_2x_floor"] = max(ratios) <= 2
    if official.get("rows"):
        out["triton_vs_mmcv_carafe_forward"] = [
            r.get("triton_forward_median_ms", float("nan")) / r["mmcv_forward_median_ms"]
            for r in official["rows"]
            if "mmcv_forward_median_ms" in r
        ]
    return out


# ----------------------------------------------------------------------------- official kernels
def official_kernels(device: str, deadline: float, *, iters: int) -> dict:
    """mmcv's CUDA CARAFE vs the Triton reassembly at CARAFE's settings, where mmcv.ops imports."""
    try:
        from mmcv.ops import carafe  # the compiled op; mmcv-lite and source installs without ops fail here
    except Exception as e:  # noqa: BLE001 - any import failure is the answer
        return {
            "mmcv_carafe": f"unavailable: {type(e).__name__}: {e}",
            "note": "PyPI has no binary mmcv wheel (source only; building its CUDA ops takes longer than this "
            "check's budget and needs the network). The official SAPA and ReSFU (FNS_Attn) kernels are "
            "GitHub sources only, not in a registry, so they are not built here either.",
        }
    from upbench_operators._triton_reassembly import reassemble_triton

    rows = []
    for name in ("peer-x2", "seg-s-x4"):
        b, c, h, w, _, s = SETTINGS[name]
        k = 5
        x = torch.randn(b, c, h, w, device=device)
        masks = torch.randn(b, k * k, s * h, s * w, device=device).softmax(1)
        row = {"setting": name, "kernel_size": k}
        ours = reassemble_triton(x, masks, k, s)
        theirs = carafe(x, masks, k, 1, s)
        row["max_abs_err"] = (ours - theirs).abs().max().item()
        for label, fn in (
            ("mmcv", lambda x=x, masks=masks, s=s: carafe(x, masks, 5, 1, s)),
            ("triton", lambda x=x, masks=masks, s=s: reassemble_triton(x, masks, 5, s)),
        ):
            if time.monotonic() > deadline:
                break
            with torch.no_grad():
                row[f"{label}_forward_median_ms"] = measure_latency(fn, device=device, warmup=3, iters=iters).median_ms
        rows.append(row)
    return {"mmcv_carafe": "ok", "rows": rows}


# ----------------------------------------------------------------------------- steps
def step_tests(remaining: float) -> dict:
    py = sys.executable
    cuda = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests"], remaining * 0.7)
    kernels = _run(
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_triton_kernels.py"], remaining * 0.3
    )
    for r in (cuda, kernels):
        r["counts"] = _pytest_counts(r["tail"][-400:])
    return {"cuda_marked": cuda, "triton_kernels": kernels}


def step_ops(out_dir: Path, remaining: float) -> dict:
    cmd = [sys.executable, "-m", "upbench", "run", "ops", "--device", "cuda", "--only", "size=*x384x32x32x32"]
    cmd += ["--out", str(out_dir / "ops"), "--no-progress", "--no-report"]
    result = _run(cmd, remaining)
    result["rows"] = _summarise_run(out_dir / "ops", ("latency_forward", "latency_forward_backward", "peak_memory"))
    return result


def step_amp_cell(out_dir: Path, remaining: float) -> dict:
    cmd = [sys.executable, "-m", "upbench", "run", "quick", "--device", "cuda", "--only", "operator=resfu"]
    cmd += ["--only", "seed=0", "--set", "train.amp=true", "--set", "train.iters=60"]
    cmd += ["--out", str(out_dir / "amp"), "--no-progress", "--no-report"]
    result = _run(cmd, remaining)
    result["rows"] = _summarise_run(out_dir / "amp", ("mIoU", "BF", "final_loss", "train_time", "cell"))
    return result


def _summarise_run(run_dir: Path, metrics: tuple[str, ...]) -> list:
    if not (run_dir / "results.jsonl").exists():
        return []
    keep = ("operator", "scale", "batch", "metric", "statistic", "value", "unit", "status", "error")
    rows = []
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("metric") in metrics and row.get("statistic") in ("median", "iqr", "value"):
            rows.append({k: row.get(k) for k in keep})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="on CPU: plan, imports, tiny timings; no record")
    parser.add_argument("--out", type=Path, default=None, help="record folder (default reports/benchmarks)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="total time budget in seconds")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["tests", "ops", "aggregation", "official", "amp"]
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    deadline = start + args.budget_s
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("gpu_check: no CUDA device on this machine (use --dry-run to check the script on CPU)", file=sys.stderr)
        return 2
    device = "cuda" if cuda and not args.dry_run else "cpu"
    record = {"kind": "gpu_check", "issue": 18, "started": _now(), "dry_run": args.dry_run}
    record["environment"] = gpu_environment(device)
    print(f"gpu_check: {record['environment'].get('device_name')} torch {torch.__version__} "
          f"triton {record['environment'].get('triton_version')} commit {record['environment']['commit']}")  # fmt: skip
    work_dir = Path(tempfile.mkdtemp(prefix="upbench-gpu-check-"))
    steps = record["steps"] = {}

    def left() -> float:
        return deadline - time.monotonic()

    if args.dry_run:
        steps["plan"] = [
            "pytest -m cuda tests; pytest tests/test_triton_kernels.py",
            "upbench run ops --device cuda --only size=*x384x32x32x32",
            f"aggregation timings at {sorted(SETTINGS)} for {sorted(KERNELS)} x {IMPLS} x {MODES}",
            "mmcv.ops.carafe vs Triton (if mmcv.ops imports)",
            "upbench run quick --only operator=resfu --only seed=0 --set train.amp=true --set train.iters=60",
        ]
        impls = tuple(i for i in IMPLS if i != "triton" or os.environ.get("TRITON_INTERPRET") == "1")
        steps["aggregation"] = bench_aggregation(device, TINY, None, deadline, iters=2, impls=impls)
        steps["official"] = {"mmcv_carafe": "not tried in a dry run"}
    else:
        bandwidth = bandwidth_gbs(device)
        record["bandwidth_gbs"] = bandwidth
        if "tests" not in args.skip:
            steps["tests"] = step_tests(min(170.0, left() * 0.4))
        if "ops" not in args.skip:
            steps["ops_suite"] = step_ops(work_dir, min(120.0, left() * 0.4))
        if "aggregation" not in args.skip:
            steps["aggregation"] = bench_aggregation(device, SETTINGS, bandwidth, deadline - 60, iters=10)
        if "official" not in args.skip:
            steps["official"] = official_kernels(device, deadline - 45, iters=10)
        if "amp" not in args.skip:
            steps["amp_cell"] = step_amp_cell(work_dir, max(30.0, min(90.0, left() - 5)))
    record["targets"] = targets(steps.get("aggregation", []), steps.get("official", {}))
    record["finished"] = _now()
    record["seconds"] = round(time.monotonic() - start, 1)
    _print_summary(record)
    if args.dry_run and args.out is None:
        return 0
    out = args.out or ROOT / "reports" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", str(record["environment"].get("device_name", "device"))).strip("-").lower()
    path = out / f"gpu_check_{gpu}_{record['started'].replace(':', '').replace('-', '')}.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], path.name).write_text(path.read_text())
    print(f"gpu_check: record written to {path}")
    return 0


def _print_summary(record: dict) -> None:
    for name, step in record["steps"].items():
        if isinstance(step, dict) and "returncode" in step:
            print(f"  {name}: exit {step['returncode']} in {step['seconds']} s")
        elif name == "tests":
            for sub, r in step.items():
                print(f"  tests/{sub}: exit {r['returncode']} {r['counts']} in {r['seconds']} s")
    for row in record["steps"].get("aggregation", []):
        cells = [f"{m} {row.get(f'{m}_median_ms', float('nan')):8.2f} ms" for m in MODES]
        extra = f" err {row['max_abs_err_vs_chunked']:.1e}" if "max_abs_err_vs_chunked" in row else ""
        status = row.get("status", "")
        print(
            f"  {row['setting']:9s} {row['kind']:18s} {row['dtype']:8s} {row['impl']:8s} " + " | ".join(cells) + extra,
            status,
        )
    print(f"  targets: {json.dumps(record['targets'], default=str)}")
    print(f"  {record['seconds']} s in all")


if __name__ == "__main__":
    sys.exit(main())
