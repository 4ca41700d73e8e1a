"""A synthetic run directory following the results-row schema of docs/architecture.md.

Used by the reporting and notebook tests until they run on a real tiny run. Values follow a
simple formula, so tests recompute expectations from the returned rows instead of hard-coding
them. Also provides a fake segmentation model and validation set for the qualitative panels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from cell_folders import cell_config, write_cell
from torch import nn

LABELS = ("bilinear", "nearest", "resfu")
TRAIN_GROUPS = (("plain", "direct", 4), ("plain", "direct", 8), ("hierarchical", "jump", 8))
SEEDS = (0, 1)
NUM_CLASSES = 3
IMAGE = 32
#: base value per label and metric; a seed adds ``seed * STEP[metric]``, the scale lowers accuracy.
BASE = {
    "bilinear": {
        "mIoU": 0.40,
        "BF": 0.30,
        "BIoU": 0.20,
        "params": 1.5e6,
        "operator_params": 0.0,
        "gmacs": 1.0,
    },
    "nearest": {
        "mIoU": 0.38,
        "BF": 0.25,
        "BIoU": 0.18,
        "params": 1.5e6,
        "operator_params": 0.0,
        "gmacs": 0.9,
    },
    "resfu": {
        "mIoU": 0.45,
        "BF": 0.36,
        "BIoU": 0.24,
        "params": 1.6e6,
        "operator_params": 4.4e4,
        "gmacs": 1.4,
    },
}
STEP = {"mIoU": 0.01, "BF": 0.02, "BIoU": 0.004, "params": 0.0, "operator_params": 0.0, "gmacs": 0.0}
UNITS = {"params": "count", "operator_params": "count", "gmacs": "GMAC"}
LATENCY = {"bilinear": 2.0, "nearest": 1.5, "resfu": 9.0}
OPS_SIZES = ((1, 8, 4, 4, 8), (1, 16, 8, 8, 16))


def _identity(kind: str, cell_id: str, label: str, arch: str, protocol: str, scale: int, seed: int) -> dict:
    return {
        "run": "colourcoded",
        "suite": "synthetic-suite",
        "cell_id": cell_id,
        "attempt": 1,
        "kind": kind,
        "operator": label,
        "label": label,
        "options": "{}",
        "architecture": arch,
        "protocol": protocol,
        "preset": "tiny" if kind == "train" else "none",
        "dataset": "colourcoded" if kind == "train" else "none",
        "scale": scale,
        "seed": seed,
        "device": "cpu",
        "dtype": "float32",
        "threads": 1,
        "git_commit": "0123abc",
        "upbench_version": "0.1.0",
        "torch_version": "2.13.0",
        "cuda_version": None,
        "device_name": "cpu",
        "hostname": "test",
        "time": "2026-01-01T00:00:00+00:00",
    }


def _row(
    ident: dict, metric: str, value: Any, unit: str, statistic: str = "value", status: str = "ok"
) -> dict:
    return {
        **ident,
        "metric": metric,
        "value": value,
        "unit": unit,
        "statistic": statistic,
        "status": status,
        "error": None,
    }


def train_value(label: str, metric: str, scale: int, seed: int) -> float:
    """The synthetic value of a train metric (accuracy drops by 1 point per doubling of the ratio)."""
    value = BASE[label][metric] + seed * STEP[metric]
    return value - 0.01 * (scale.bit_length() - 3) if metric in ("mIoU", "BF", "BIoU") else value


def train_rows(label: str, arch: str, protocol: str, scale: int, seed: int, cell_id: str) -> list[dict]:
    ident = _identity("train", cell_id, label, arch, protocol, scale, seed)
    rows = []
    for metric in BASE[label]:
        if label == "nearest" and metric == "BF" and seed == 1:
            continue  # one missing measurement: BF of nearest has n=1
        rows.append(
            _row(ident, metric, train_value(label, metric, scale, seed), UNITS.get(metric, "fraction"))
        )
    lat = LATENCY[label] * scale / 4 + 0.1 * seed
    rows += [
        _row(ident, "latency_forward", lat, "ms", "median"),
        _row(ident, "latency_forward", 0.3, "ms", "iqr"),
    ]
    rows += [_row(ident, "latency_forward", 3, "count", "n"), _row(ident, "cell", 12.5, "s")]
    return rows


def ops_rows(label: str, scale: int, size: tuple[int, ...], cell_id: str) -> list[dict]:
    b, c, h, w, g = size
    ident = _identity("ops", cell_id, label, "none", "none", scale, 0)
    ident.update(batch=b, in_channels=c, lr_height=h, lr_width=w, guide_channels=g)
    pixels = b * c * h * w * scale * scale
    rows = [
        _row(ident, "params", 1000.0 if label == "resfu" else 0.0, "count"),
        _row(ident, "gmacs", pixels * (30 if label == "resfu" else 4) / 1e9, "GMAC"),
        _row(ident, "latency_forward", LATENCY[label] * pixels / 1e4, "ms", "median"),
        _row(ident, "latency_forward_backward", 3 * LATENCY[label] * pixels / 1e4, "ms", "median"),
        _row(ident, "peak_memory", pixels * 4 / 2**20 * (5 if label == "resfu" else 1), "MiB"),
        _row(ident, "peak_memory_forward_backward", pixels * 12 / 2**20, "MiB"),
    ]
    return rows + [_row(ident, "cell", 0.5, "s")]


def write_synthetic_run(run_dir: Path, *, ops: bool = True, models: bool = False) -> list[dict]:
    """Write ``results.jsonl``, ``suite.toml``, ``environment.json`` and cell configs; return the rows.

    Also writes a failed cell and a cell that failed once and then succeeded (attempt 2). With
    ``models``, train cells get a ``model.pt`` of :class:`FakeSegModel`.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    n = 0
    for arch, protocol, scale in TRAIN_GROUPS:
        for label in LABELS:
            for seed in SEEDS:
                n += 1
                cell_id = f"t{n:04d}"
                cell_rows = train_rows(label, arch, protocol, scale, seed, cell_id)
                if n == 1:  # first attempt failed, second attempt succeeded
                    failed = {**cell_rows[-1], "status": "failed", "error": "RuntimeError: boom"}
                    rows.append(failed)
                    cell_rows = [{**r, "attempt": 2} for r in cell_rows]
                rows += cell_rows
                _write_config(run_dir, cell_id, label, arch, protocol, scale, seed, models)
    failed = _identity("train", "tfail", "resfu", "plain", "direct", 16, 0)
    rows.append(
        {**_row(failed, "cell", 1.0, "s", status="oom"), "error": "OutOfMemoryError: CUDA out of memory"}
    )
    if ops:
        for label in LABELS:
            for size in OPS_SIZES:
                for scale in (2, 4):
                    n += 1
                    rows += ops_rows(label, scale, size, f"o{n:04d}")
    with open(run_dir / "results.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    (run_dir / "suite.toml").write_text('[suite]\nname = "synthetic-suite"\nkind = "train"\n')
    (run_dir / "environment.json").write_text(json.dumps({"device": "cpu", "hostname": "test"}) + "\n")
    return rows


def _write_config(
    run_dir: Path, cell_id: str, label: str, arch: str, protocol: str, scale: int, seed: int, models: bool
) -> None:
    dataset = {"name": "colourcoded", "root": "", "train": {}, "val": {"size": IMAGE, "count": 4}}
    config = cell_config(label, seed, architecture=arch, protocol=protocol, scale=scale, dataset=dataset)
    if models:
        torch.manual_seed(seed)
    write_cell(run_dir, cell_id, config, model=FakeSegModel(label, scale) if models else None)


class FakeSegModel(nn.Module):
    """A stand-in segmentation model: 1x1 conv, average-pool by ``scale``, upsample, classify.

    ``operator`` ``nearest`` upsamples with nearest (a mosaic), anything else bilinearly.
    """

    def __init__(self, operator: str, scale: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.mode = "nearest" if operator == "nearest" else "bilinear"
        self.scale = scale
        self.proj = nn.Conv2d(3, 8, 1)
        self.classifier = nn.Conv2d(8, num_classes, 1)

    def forward(self, images: torch.Tensor, return_features: bool = False):  # noqa: ANN201
        low = F.avg_pool2d(self.proj(images), self.scale)
        kwargs = {} if self.mode == "nearest" else {"align_corners": False}
        up = F.interpolate(low, scale_factor=self.scale, mode=self.mode, **kwargs)
        logits = self.classifier(up)
        return (logits, {"upsampled": up}) if return_features else logits


def fake_val_set(count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Smooth random images with a three-class label map (255 in a corner)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        image = F.interpolate(torch.randn(1, 3, 4, 4, generator=gen), size=(IMAGE, IMAGE), mode="bilinear")[0]
        label = (image[0] > 0).long() + (image[1] > 0.5).long()
        label[:3, :3] = 255
        out.append((image, label))
    return out
