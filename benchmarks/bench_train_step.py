"""CPU training throughput: one training step of the tiny plain model per operator, beside bilinear.

Two measurements per scale (x4, x8, x16 by default), all in one run so that ratios compare like
with like on a shared machine:

* ``step``: one training step of ``build_model("plain", preset="tiny", scale=s)`` at the settings
  of the ``ratio`` suite (128 px images, batch 8, AdamW at its learning rate): forward, the
  training loss, ``zero_grad``, backward and the optimizer step. Every operator is timed next
  to ``bilinear`` and reported as a ratio to it.
* ``operator``: the operator alone, forward + backward (a fixed random output gradient) at the shapes the
  plain model gives it (``x`` 64 x 8 x 8, guide 32 x 8s x 8s, batch 8 at 128 px), with its forward
  GMACs (``upbench.profiling.count_macs``) and GFLOP/s = ``2 * 3 * GMACs / time`` (the backward
  counted as twice the forward, the usual convention).

Timings are the median and IQR of individually timed calls after warm-up
(``upbench.profiling.measure_latency``); the thread count is recorded. Usage::

    python benchmarks/bench_train_step.py                                  # everything (long)
    python benchmarks/bench_train_step.py --operators resfu fade sapa --scales 16 --iters 3 --warmup 1
    python benchmarks/bench_train_step.py --threads 2 --out reports/benchmarks/train_step_cpu.json

``--out`` writes the rows as JSON (one tidy row per measurement) and the printed table beside it
as ``.txt``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import upbench
from upbench.architectures import build_model
from upbench.data import dataset_info
from upbench.profiling import count_macs, environment, measure_latency
from upbench.suite import load_suite
from upbench.training.config import TrainConfig
from upbench.training.loop import segmentation_loss
from upbench.training.optim import build_optimizer

BASELINE = "bilinear"
DEFAULT_SCALES = (4, 8, 16)
PATCH = 16  # the plain ViT's stride: the operator input is at 1/16 of the image


def ratio_settings() -> dict[str, Any]:
    """Image size, batch, preset, classes and the TrainConfig of the ``ratio`` suite."""
    suite = load_suite("ratio").config
    arch = next(a for a in suite.architectures if a.name == "plain")
    return {
        "size": int(suite.dataset.train.get("size", 128)),
        "preset": arch.preset,
        "num_classes": dataset_info(suite.dataset.name).num_classes,
        "config": TrainConfig(**suite.train),
    }


def step_fn(operator: str, scale: int, settings: dict[str, Any]):
    """A closure running one training step of the plain model with ``operator`` at ``scale``."""
    torch.manual_seed(0)
    config: TrainConfig = settings["config"]
    model = build_model(
        "plain", operator=operator, num_classes=settings["num_classes"], preset=settings["preset"], scale=scale
    )
    model.train()
    optimizer = build_optimizer(model, config)
    size, batch = settings["size"], config.batch_size
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, settings["num_classes"], (batch, size, size))

    def step() -> None:
        loss = segmentation_loss(model(images), labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def operator_case(operator: str, scale: int, settings: dict[str, Any]) -> tuple[torch.nn.Module, tuple, float]:
    """The plain model's own operator instance with inputs of the shapes it gets there, and its GMACs.

    The ViT feature is at 1/16 of the image (``x``: ``C x size/16 x size/16``) and the guide at
    ``s`` times that.
    """
    torch.manual_seed(0)
    model = build_model(
        "plain", operator=operator, num_classes=settings["num_classes"], preset=settings["preset"], scale=scale
    )
    (module,) = model.upsamplers()
    module.train()
    batch, low = settings["config"].batch_size, settings["size"] // PATCH
    x = torch.randn(batch, module.in_channels, low, low, requires_grad=True)
    guide = None
    if module.guide_channels is not None:
        guide = torch.randn(batch, module.guide_channels, low * scale, low * scale, requires_grad=True)
    inputs = (x, guide)
    gmacs = count_macs(module, inputs).total / 1e9
    return module, inputs, gmacs


def timing_rows(kind: str, operator: str, scale: int, stats, extra: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"kind": kind, "operator": operator, "scale": scale, "threads": stats.threads, "n": stats.n}
    rows = [
        {**base, "metric": "time", "statistic": "median", "value": stats.median_ms, "unit": "ms"},
        {**base, "metric": "time", "statistic": "iqr", "value": stats.iqr_ms, "unit": "ms"},
    ]
    rows += [{**base, "metric": k, "statistic": "value", "value": v, "unit": u} for k, (v, u) in extra.items()]
    return rows


def run(args: argparse.Namespace, say: Callable[[str], None]) -> list[dict[str, Any]]:
    settings = ratio_settings()
    rows: list[dict[str, Any]] = []
    operators = [op for op in args.operators if op != BASELINE]
    say(f"threads={torch.get_num_threads()} torch={torch.__version__} (median ms, IQR; ratio to bilinear)")
    for scale in args.scales:
        base = measure_latency(step_fn(BASELINE, scale, settings), device="cpu", warmup=args.warmup, iters=args.iters)
        rows += timing_rows("step", BASELINE, scale, base, {"ratio_to_bilinear": (1.0, "ratio")})
        say(f"x{scale:<3} step  {BASELINE:<14} {base.median_ms:9.1f} ms (IQR {base.iqr_ms:7.1f})   x1.00")
        for op in operators:
            if scale not in _scales(op):
                continue
            stats = measure_latency(step_fn(op, scale, settings), device="cpu", warmup=args.warmup, iters=args.iters)
            ratio = stats.median_ms / base.median_ms
            rows += timing_rows("step", op, scale, stats, {"ratio_to_bilinear": (ratio, "ratio")})
            say(f"x{scale:<3} step  {op:<14} {stats.median_ms:9.1f} ms (IQR {stats.iqr_ms:7.1f})   x{ratio:.2f}")
            if not args.skip_operator:
                module, inputs, gmacs = operator_case(op, scale, settings)

                with torch.no_grad():  # a dense output gradient, as in training (.sum() gives a stride-0 one)
                    cotangent = torch.randn_like(module(*inputs))

                def fwd_bwd(module=module, inputs=inputs, cotangent=cotangent) -> None:
                    module(*inputs).backward(cotangent)

                stats = measure_latency(fwd_bwd, device="cpu", warmup=args.warmup, iters=args.iters)
                gflops = 2 * 3 * gmacs / (stats.median_ms / 1e3)
                extra = {"gmacs": (gmacs, "GMAC"), "gflops": (gflops, "GFLOP/s")}
                rows += timing_rows("operator", op, scale, stats, extra)
                say(
                    f"x{scale:<3} op    {op:<14} {stats.median_ms:9.1f} ms (IQR {stats.iqr_ms:7.1f})   "
                    f"{gmacs:.3f} GMAC  {gflops:.1f} GFLOP/s"
                )
    return rows


def _scales(operator: str) -> tuple[int, ...] | None:
    scales = upbench.operator_info(operator).scales
    return DEFAULT_SCALES if scales is None else tuple(scales)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--operators", nargs="+", default=None, help="registry names (default: every operator)")
    parser.add_argument("--scales", nargs="+", type=int, default=list(DEFAULT_SCALES))
    parser.add_argument("--iters", type=int, default=10, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--skip-operator", action="store_true", help="time only the training steps")
    parser.add_argument("--out", default=None, help="write the rows here as JSON (and the table as .txt)")
    args = parser.parse_args(argv)
    known = upbench.list_operators()
    args.operators = args.operators or known
    unknown = [op for op in args.operators if op not in known]
    if unknown:
        parser.exit(2, f"error: unknown operator(s) {', '.join(unknown)}; choose from {', '.join(known)}\n")
    bad = [s for s in args.scales if s not in DEFAULT_SCALES]
    if bad:
        parser.exit(2, f"error: the plain model supports scales 4, 8 and 16, got {bad}\n")
    if args.iters < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        parser.exit(2, "error: --iters and --threads must be >= 1 and --warmup >= 0\n")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    rows = run(args, say)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        env = environment("cpu")
        out.write_text(json.dumps({"environment": env, "argv": sys.argv[1:], "rows": rows}, indent=2) + "\n")
        out.with_suffix(".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
