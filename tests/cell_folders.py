"""The one writer of cell folders for the tests: the files a finished cell leaves in ``RUN_DIR/cells/<id>/``.

``config.json`` is written by the cell's own writer (:func:`upbench.cell.write_config`), the
per-image records by the metrics' (:mod:`upbench.metrics.per_image`), so the fixtures have the
layout a real run has; :func:`cell_config` is a resolved train configuration with the keys the
reports read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from upbench.cell import write_config
from upbench.metrics.per_image import FILE_NAME, counts_to_frame, write_per_image


def cell_config(label: str, seed: int, **changes: Any) -> dict[str, Any]:
    """A train cell's configuration: ``label`` (also its operator) at ``seed`` on the colourcoded
    dataset, plain x4 unless ``changes`` (top-level keys) say otherwise."""
    return {
        "kind": "train",
        "label": label,
        "operator": label,
        "options": {},
        "architecture": "plain",
        "protocol": "direct",
        "preset": "tiny",
        "scale": 4,
        "seed": seed,
        "device": "cpu",
        "dataset": {"name": "colourcoded", "root": "", "train": {}, "val": {}},
        **changes,
    }


def write_cell(
    run_dir: Path,
    cell_id: str,
    config: dict[str, Any],
    *,
    metrics: Any = None,
    model: torch.nn.Module | None = None,
) -> Path:
    """``cells/<cell_id>/`` with ``config.json``, and ``per_image.parquet`` from the per-image
    records of ``metrics`` (a :class:`~upbench.metrics.SegmentationMetrics` built with
    ``per_image=True``) and ``model.pt`` from ``model`` when given."""
    cell_dir = Path(run_dir) / "cells" / cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    write_config(cell_dir, config)
    if metrics is not None:
        write_per_image(cell_dir / FILE_NAME, counts_to_frame(metrics.per_image_counts()))
    if model is not None:
        torch.save(model.state_dict(), cell_dir / "model.pt")
    return cell_dir
