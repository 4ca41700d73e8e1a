"""Time upbench.metrics on one 512x512, 19-class label map (target: all metrics under 50 ms on CPU).

The maps are synthetic but realistic: a Voronoi partition with 19 classes as the target and the
same partition with shifted seeds as the prediction (boundaries a few pixels off, so contours and
bands are non-trivial). Prints median and interquartile range over many iterations after warm-up,
with the thread count. Run: ``python benchmarks/bench_metrics.py [--threads 1] [--iters 50]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from upbench.metrics import evaluate
from upbench.metrics.bfscore import bf_per_image
from upbench.metrics.biou import biou_counts
from upbench.metrics.confusion import confusion_matrix
from upbench.metrics.inputs import canonical_pairs


def voronoi_labels(size: int, num_classes: int, seeds: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Label map: each pixel takes the class of its nearest seed."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    grid = torch.stack([ys, xs], -1).reshape(-1, 1, 2).float()
    nearest = ((grid - seeds[None]) ** 2).sum(-1).argmin(1)
    classes = torch.randint(0, num_classes, (seeds.shape[0],), generator=generator)
    classes[:num_classes] = torch.arange(num_classes)  # every class present
    return classes[nearest].reshape(size, size)


def make_pair(size: int = 512, num_classes: int = 19, regions: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    seeds = torch.rand(regions, 2, generator=gen) * size
    target = voronoi_labels(size, num_classes, seeds, torch.Generator().manual_seed(1))
    moved = seeds + torch.randn(regions, 2, generator=gen) * 3
    pred = voronoi_labels(size, num_classes, moved, torch.Generator().manual_seed(1))
    target[:8] = 255  # a strip of ignored pixels, as in real datasets
    return pred, target


def time_ms(fn: Callable[[], object], warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    k = 19
    pred, target = (t.to(args.device) for t in make_pair(num_classes=k))
    ((cp, ct),) = canonical_pairs(pred, target, k, 255)
    radius, width = 0.0075 * (512**2 * 2) ** 0.5, max(1, round(0.02 * (512**2 * 2) ** 0.5))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    cases: dict[str, Callable[[], object]] = {
        "evaluate (all metrics)": lambda: evaluate(pred, target, k),
        "evaluate (boundary=False)": lambda: evaluate(pred, target, k, boundary=False),
        "confusion matrix": lambda: (confusion_matrix(cp, ct, k), sync()),
        f"BIoU counts (d={width} and 3)": lambda: (biou_counts(cp, ct, k, (width, 3)), sync()),
        f"BF per image (theta={radius:.2f} px)": lambda: (bf_per_image(cp, ct, k, radius), sync()),
    }
    print(
        f"upbench.metrics, 512x512, {k} classes, device={args.device}, threads={torch.get_num_threads()}, "
        f"warmup={args.warmup}, iters={args.iters}, torch {torch.__version__}"
    )
    print(f"{'case':<34} {'median ms':>10} {'q1 ms':>8} {'q3 ms':>8} {'iqr ms':>8}")
    for name, fn in cases.items():
        q1, median, q3 = statistics.quantiles(time_ms(fn, args.warmup, args.iters), n=4)
        print(f"{name:<34} {median:>10.2f} {q1:>8.2f} {q3:>8.2f} {q3 - q1:>8.2f}")


if __name__ == "__main__":
    main()
