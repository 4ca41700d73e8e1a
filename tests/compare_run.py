"""A run directory with per-image records, built from label maps whose quality we choose.

Each cell's predictions are scored by :class:`upbench.metrics.SegmentationMetrics` itself, so its
``results.jsonl`` rows and its ``per_image.parquet`` come from the real code paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import cell_folders
import numpy as np
import torch
from cell_folders import cell_config

from upbench import results
from upbench.metrics import SegmentationMetrics, metric_rows

K = 3
SIZE = 16


def targets(n_images: int) -> list[torch.Tensor]:
    """Blocky three-class label maps, the same for every cell."""
    rng = np.random.default_rng(123)
    maps = [np.kron(rng.integers(0, K, (4, 4)), np.ones((4, 4), dtype=np.int64)) for _ in range(n_images)]
    return [torch.from_numpy(m) for m in maps]


def noisy(target: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """``target`` with a fraction ``rate`` of its pixels set to random labels."""
    gen = torch.Generator().manual_seed(seed)
    flip = torch.rand(target.shape, generator=gen) < rate
    return torch.where(flip, torch.randint(0, K, target.shape, generator=gen), target)


def write_cell(run_dir: Path, cell_id: str, label: str, seed: int, preds, tgts, setting: dict | None = None) -> None:  # noqa: ANN001
    """A finished train cell: its folder (config.json, per_image.parquet) and its results rows."""
    metrics = SegmentationMetrics(K, per_image=True)
    for p, t in zip(preds, tgts):
        metrics.update(p, t)
    dataset = {"name": "colourcoded", "root": "", "train": {}, "val": {"size": SIZE, "count": len(tgts)}}
    config = cell_config(label, seed, **{"dataset": dataset, "train": {"iters": 10}, **(setting or {})})
    cell_folders.write_cell(run_dir, cell_id, config, metrics=metrics)
    ident = {
        "run": run_dir.name,
        "suite": "compare-test",
        "cell_id": cell_id,
        "attempt": 1,
        "kind": "train",
        **{k: config[k] for k in ("label", "operator", "architecture", "protocol", "preset", "scale", "seed")},
        "options": "{}",
        "dataset": "colourcoded",
        "device": "cpu",
    }
    rows = [*metric_rows(metrics.compute(), K), results.row(results.CELL_METRIC, 1.0, "s")]
    with open(run_dir / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.writelines(json.dumps({**ident, **r}) + "\n" for r in rows)
