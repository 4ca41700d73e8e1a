"""Compute a train suite will need before it runs: device-hours per cell and in total.

Three sources, named in every estimate:

- ``published``: training-iteration times read from the authors' logs (the median of the
  ``time`` field of every logged iteration), for the settings they ran; the table is
  :data:`PUBLISHED_ITER_S`.
- ``measured``: upbench's own training-step times of the tiny plain model on 2 CPU cores
  (``benchmarks/bench_train_step.py``, records in ``reports/benchmarks/``), for the CPU suites
  (plain ViT-tiny, 128 px); the table is :data:`MEASURED_CPU_STEP_MS`. Measured at batch 8; other
  batch sizes are scaled linearly (an approximation, said in the source).
- ``probe``: a short measurement on the current device (``plan --probe``): the cell's model at
  its preset, a micro-batch of random images at the training crop, one warm-up step and
  ``probe_iters`` timed forward/backward/optimizer steps; seconds per iteration =
  ``accumulate`` x the time of one micro-batch step.

Hours are ``iters x seconds per iteration / 3600`` for training only (evaluation, data loading
stalls and checkpoints are not counted). Cells with neither source have no estimate and the
total is then a lower bound.
"""

from __future__ import annotations

import os
import textwrap
import time
from dataclasses import dataclass
from typing import Any

import torch

from upbench.suite import Cell

#: ``(architecture, preset, protocol, operator, batch, crop) -> (s/iter, device, source)``; medians
#: over all logged iterations (3190 lines each) of non-distributed runs on one GPU.
PUBLISHED_ITER_S: dict[tuple[str, str, str, str, int, int], tuple[float, str, str]] = {
    ("hierarchical", "b1", "cascade", op, 16, 512): (
        seconds,
        "1x RTX A6000",
        f"poppinace/fade@e4de4db segformer/segformer.b1_{log}.512x512.ade.160k.log",
    )
    for op, log, seconds in (
        ("bilinear", "bilinear", 0.857),
        ("carafe", "carafe", 0.603),
        ("fade", "fade", 0.715),
        ("fade_lite", "fade_lite", 0.682),
    )
}


#: ``operator -> {scale: median ms}`` of one training step of ``build_model("plain", preset="tiny")``
#: at 128 px, batch 8, AdamW, 2 threads on 2 quiet CPU cores (AMD EPYC): x4 and x8 from
#: ``reports/benchmarks/train_step_all_x4_x8_cpu.txt``, x16 from ``reports/benchmarks/train_step_cpu.txt``.
MEASURED_CPU_STEP_MS: dict[str, dict[int, float]] = {
    "anyup": {4: 306.1, 8: 944.2},
    "bilinear": {4: 24.9, 8: 21.6, 16: 40.0},
    "carafe": {4: 29.9, 8: 51.0},
    "deconv": {4: 22.4, 8: 33.3},
    "dysample": {4: 23.2, 8: 33.0},
    "dysample_plus": {4: 23.5, 8: 34.9},
    "fade": {4: 48.6, 8: 93.0, 16: 552.5},
    "fade_lite": {4: 44.1, 8: 75.2},
    "featup_jbu": {4: 289.7, 8: 1076.1},
    "guided_bilinear": {4: 35.3, 8: 57.5},
    "jafar": {4: 216.9, 8: 815.1},
    "loftup": {4: 575.7, 8: 2293.5},
    "naf": {4: 338.1, 8: 1385.8},
    "nearest": {4: 19.7, 8: 25.8},
    "pixelshuffle": {4: 30.2, 8: 73.8},
    "resfu": {4: 74.7, 8: 217.9, 16: 1253.8},
    "sapa": {4: 42.5, 8: 70.5, 16: 325.1},
    "sapa_g": {4: 45.6, 8: 79.7},
    "sapa_i": {4: 46.7, 8: 86.2},
}
MEASURED_BATCH = 8
MEASURED_CROP = 128
CPU_DEVICE = "CPU, 2 cores"


@dataclass(frozen=True)
class CellCost:
    """The estimated training cost of one cell (``hours`` None: no estimate)."""

    cell_id: str
    seconds_per_iter: float | None
    hours: float | None
    device: str
    source: str


def _train_crop(config: dict[str, Any]) -> int:
    opts = config.get("dataset", {}).get("train", {})
    crop = opts.get("crop_size") or opts.get("size") or 512  # resolved configs hold None for unset keys
    return int(crop[0] if isinstance(crop, list | tuple) else crop)


def published_cost(cell: Cell) -> CellCost | None:
    """The cell's cost from :data:`PUBLISHED_ITER_S`, or None when its setting was not logged."""
    c = cell.config
    if cell.kind != "train" or c.get("options"):
        return None
    batch = c["train"].get("batch_size", 8)
    key = (c["architecture"], c["preset"], c["protocol"], c["operator"], batch, _train_crop(c))
    if key not in PUBLISHED_ITER_S:
        return None
    seconds, device, source = PUBLISHED_ITER_S[key]
    iters = c["train"].get("iters", 1000)
    return CellCost(cell.cell_id, seconds, iters * seconds / 3600, device, f"published: {source}")


def measured_cost(cell: Cell) -> CellCost | None:
    """The cell's cost from :data:`MEASURED_CPU_STEP_MS` (plain tiny at 128 px, no options), or None."""
    c = cell.config
    if cell.kind != "train" or c.get("options") or (c.get("architecture"), c.get("preset")) != ("plain", "tiny"):
        return None
    if _train_crop(c) != MEASURED_CROP:
        return None
    ms = MEASURED_CPU_STEP_MS.get(c.get("operator"), {}).get(int(c.get("scale", 0)))
    if ms is None:
        return None
    batch = int(c["train"].get("batch_size", MEASURED_BATCH))
    seconds = ms / 1000 * batch / MEASURED_BATCH
    iters = c["train"].get("iters", 1000)
    scaled = "" if batch == MEASURED_BATCH else f", scaled from batch {MEASURED_BATCH} to {batch}"
    source = f"measured: reports/benchmarks train-step records (2 CPU cores{scaled})"
    return CellCost(cell.cell_id, seconds, iters * seconds / 3600, CPU_DEVICE, source)


def probe_cost(cell: Cell, device: str, probe_iters: int = 3) -> CellCost:
    """Measure the cell's training step on ``device`` (see the module docstring)."""
    from upbench.cell import build_cell_model
    from upbench.data import dataset_info
    from upbench.training import TrainConfig, build_optimizer
    from upbench.training.loop import segmentation_loss

    c = cell.config
    tcfg = TrainConfig(**{**c["train"], "seed": c["seed"]})
    num_classes = dataset_info(c["dataset"]["name"]).num_classes
    model = build_cell_model(c, num_classes).to(device).train()
    optimizer = build_optimizer(model, tcfg)
    crop, micro = _train_crop(c), tcfg.batch_size // tcfg.accumulate
    images = torch.randn(micro, 3, crop, crop, device=device)
    labels = torch.randint(0, num_classes, (micro, crop, crop), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        segmentation_loss(model(images), labels, 255).backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    step()
    t0 = time.perf_counter()
    for _ in range(probe_iters):
        step()
    seconds = tcfg.accumulate * (time.perf_counter() - t0) / probe_iters
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    return CellCost(cell.cell_id, seconds, tcfg.iters * seconds / 3600, name, f"probe: {probe_iters} steps on {name}")


def estimate(cells: list[Cell], *, probe: bool = False, device: str = "cpu", probe_iters: int = 3) -> list[CellCost]:
    """Costs of the train cells: the probe if asked (one per distinct setting), else published."""
    out: list[CellCost] = []
    measured: dict[str, CellCost] = {}
    for cell in cells:
        if cell.kind != "train":
            continue
        if probe:
            c = cell.config
            same = {k: v for k, v in c.items() if k not in ("seed", "label")}
            same["train"] = {k: v for k, v in c["train"].items() if k != "seed"}  # resolved train holds the seed
            key = repr(sorted(same.items(), key=lambda kv: kv[0]))
            if key not in measured:
                measured[key] = probe_cost(cell, device, probe_iters)
            m = measured[key]
            out.append(CellCost(cell.cell_id, m.seconds_per_iter, m.hours, m.device, m.source))
            continue
        known = published_cost(cell) or measured_cost(cell)
        out.append(known or CellCost(cell.cell_id, None, None, "", "no estimate (plan --probe)"))
    return out


def duration_text(hours: float, device: str) -> str:
    """``12.3 min`` on CPUs and below an hour, else ``4.5 h`` (``(2.1 days)`` from two days on)."""
    if device.startswith("CPU") and hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.1f} h" + (f" ({hours / 24:.1f} days)" if hours >= 48 else "")


def summary(costs: list[CellCost]) -> str:
    """Lines: the training time per device (CPU suites in CPU minutes), then the cells without an
    estimate collapsed into one line."""
    lines = ["estimated training time (training steps only; evaluation and data loading not counted):"]
    devices = sorted({c.device for c in costs if c.hours is not None})
    for device in devices:
        known = [c for c in costs if c.hours is not None and c.device == device]
        total = sum(c.hours for c in known)
        lines.append(f"  {device}: {len(known)} cell(s), {duration_text(total, device)} ({_sources(known)})")
    missing = [c for c in costs if c.hours is None]
    if missing:
        lines.append(
            f"  no estimate: {len(missing)} of {len(costs)} cell(s) (no measured or published step time for "
            "their setting; plan --probe measures them here)"
        )
    return "\n".join(textwrap.fill(line, 100, subsequent_indent="    ") for line in lines)


def _sources(costs: list[CellCost]) -> str:
    """The sources of ``costs`` in a few words: their common beginning where they differ."""
    sources = sorted({c.source for c in costs})
    if len(sources) == 1:
        return sources[0]
    common = os.path.commonprefix(sources)
    cut = max(common.rfind(" "), common.rfind("/"))
    return (common[: cut + 1] if cut > 0 else common).rstrip(" /") + " ... (one per cell)"
