"""Compute a train suite will need before it runs: device-hours per cell and in total.

Two sources, named in every estimate:

- ``published``: training-iteration times read from the authors' logs (the median of the
  ``time`` field of every logged iteration), for the settings they ran; the table is
  :data:`PUBLISHED_ITER_S`.
- ``probe``: a short measurement on the current device (``plan --probe``): the cell's model at
  its preset, a micro-batch of random images at the training crop, one warm-up step and
  ``probe_iters`` timed forward/backward/optimizer steps; seconds per iteration =
  ``accumulate`` x the time of one micro-batch step.

Hours are ``iters x seconds per iteration / 3600`` for training only (evaluation, data loading
stalls and checkpoints are not counted). Cells with neither source have no estimate and the
total is then a lower bound.
"""

from __future__ import annotations

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
        out.append(published_cost(cell) or CellCost(cell.cell_id, None, None, "", "no estimate (plan --probe)"))
    return out


def summary(costs: list[CellCost]) -> str:
    """One line: total hours and how many cells lack an estimate."""
    known = [c.hours for c in costs if c.hours is not None]
    total = sum(known)
    missing = len(costs) - len(known)
    devices = sorted({c.device for c in costs if c.hours is not None})
    text = f"estimated training compute: {'>= ' if missing else ''}{total:.2f} device-hours"
    text += f" ({total / 24:.1f} device-days) on {', '.join(devices) or 'no device'}"
    if missing:
        text += f"; {missing} of {len(costs)} cell(s) have no estimate (add --probe to measure them here)"
    return text
