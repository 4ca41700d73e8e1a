"""Qualitative panels: every operator's trained model on the same validation images.

For each train group (architecture, protocol, preset, dataset, scale) whose cells saved a
``model.pt``, the model of each operator label (lowest seed) is rebuilt, loaded and run on the
first validation images. A panel shows per operator the prediction, the error map and a PCA
colouring of the upsampled feature map (``model(images, return_features=True)[1]["upsampled"]``),
and the mosaic index of that feature (:func:`upbench.reporting.mosaic.mosaic_index`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import nn

from upbench.errors import InputShapeError, UpbenchError
from upbench.reporting.figures import STYLE
from upbench.reporting.load import CELL_METRIC, cell_config
from upbench.reporting.mosaic import mosaic_index
from upbench.reporting.pca import pca_basis, pca_rgb

log = logging.getLogger("upbench.reporting")
GROUP = ("architecture", "protocol", "preset", "dataset", "scale")
#: The hierarchical head's ``upsampled`` feature is c4 (stride 32) brought to c1 (stride 4): ratio 8
#: for both protocols (one x8 jump, or three chained x2 steps).
HIERARCHICAL_FEATURE_SCALE = 8


@dataclass
class Panel:
    """Predictions, error maps, PCA colourings and mosaic indices of one group's operators."""

    title: str
    stem: str
    scale: int
    num_classes: int
    ignore_index: int
    images: np.ndarray  # [N, H, W, 3] in [0, 1]
    targets: np.ndarray  # [N, H, W]
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # label -> [N, H, W]
    pca: dict[str, np.ndarray] = field(default_factory=dict)  # label -> [N, h, w, 3]
    mosaic: dict[str, float | None] = field(default_factory=dict)  # label -> mosaic index (None: n/a)
    problems: dict[str, str] = field(default_factory=dict)  # label -> why it is missing or n/a
    class_names: tuple[str, ...] = ()  # the dataset's, for the class-colour legend


def _class_names(config: dict[str, Any]) -> tuple[str, ...]:
    from upbench.data import dataset_info

    try:
        return tuple(dataset_info(config["dataset"]["name"]).class_names)
    except (UpbenchError, KeyError):
        return ()


#: The class legend lists at most this many classes (those covering most pixels of the panel).
LEGEND_CLASSES = 24


def load_cell_model(config: dict[str, Any], num_classes: int) -> nn.Module:
    """The (untrained) model of a train cell config, as the cell builds it."""
    from upbench.cell import build_cell_model

    return build_cell_model(config, num_classes)


def load_val_set(config: dict[str, Any]) -> tuple[Any, int, int]:
    """``(validation dataset, num_classes, ignore_index)`` of a train cell config."""
    from upbench.data import build_dataset, dataset_info

    ds = config["dataset"]
    info = dataset_info(ds["name"])
    dataset = build_dataset(ds["name"], split="val", root=ds.get("root") or None, **ds.get("val", {}))
    return dataset, int(config.get("num_classes", info.num_classes)), int(info.ignore_index)


def model_cells(run_dir: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Finished ``ok`` train cells with a ``model.pt``: one per label and group (lowest seed)."""
    cells = rows[(rows["metric"] == CELL_METRIC) & (rows["status"] == "ok") & (rows["kind"] == "train")]
    has_model = [Path(run_dir, "cells", c, "model.pt").is_file() for c in cells["cell_id"]]
    cells = cells[pd.Series(has_model, index=cells.index, dtype=bool)]  # (a bare empty list selects columns)
    cols = [*GROUP, "label", "seed", "cell_id"]
    cells = cells[cols].sort_values(cols, kind="mergesort")
    return cells.drop_duplicates([*GROUP, "label"]).reset_index(drop=True)


def feature_scale(config: dict[str, Any]) -> int:
    """Block size of the ``upsampled`` feature: the cell's scale (plain) or 8 (hierarchical head)."""
    return HIERARCHICAL_FEATURE_SCALE if config["architecture"] == "hierarchical" else int(config["scale"])


def _display(images: torch.Tensor) -> np.ndarray:
    """Normalised images ``[N, 3, H, W]`` -> ``[N, H, W, 3]`` in [0, 1] (per-image min-max)."""
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    hi = images.amax(dim=(1, 2, 3), keepdim=True)
    return ((images - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()


def collect(run_dir: str | Path, rows: pd.DataFrame, *, n_images: int = 3, device: str = "cpu") -> list[Panel]:
    """A :class:`Panel` per train group with saved models; a model that fails is noted in ``problems``."""
    run_dir = Path(run_dir)
    panels = []
    for key, group in model_cells(run_dir, rows).groupby(list(GROUP), sort=True):
        arch, protocol, preset, dataset, scale = key
        first = cell_config(run_dir, group["cell_id"].iloc[0])
        val, num_classes, ignore = load_val_set(first)
        n = min(n_images, len(val))
        if n == 0:
            log.info("qualitative %s/%s/x%s: the validation set is empty", arch, protocol, scale)
            continue
        samples = [val[i] for i in range(n)]
        images = torch.stack([s[0] for s in samples])
        targets = torch.stack([torch.as_tensor(s[1]) for s in samples])
        panel = Panel(
            title=f"{arch} / {protocol} / x{scale} ({preset}, {dataset})",
            stem=f"qualitative-{arch}-{protocol}-x{scale}-{preset}-{dataset}",
            scale=feature_scale(first),
            num_classes=num_classes,
            ignore_index=ignore,
            images=_display(images),
            targets=targets.numpy(),
            class_names=_class_names(first),
        )
        for label, cell_id in zip(group["label"], group["cell_id"]):
            try:
                _run_model(panel, label, cell_config(run_dir, cell_id), run_dir / "cells" / cell_id, images, device)
            except (UpbenchError, RuntimeError, KeyError, ValueError, OSError) as err:  # keep the others
                panel.problems[label] = f"cell {cell_id}: {type(err).__name__}: {err}"
                log.warning("qualitative %s: %s skipped: %s", panel.title, label, panel.problems[label])
        panels.append(panel)
    return panels


def _run_model(
    panel: Panel, label: str, config: dict[str, Any], cell_dir: Path, images: torch.Tensor, device: str
) -> None:
    model = load_cell_model(config, panel.num_classes)
    state = torch.load(cell_dir / "model.pt", map_location=device, weights_only=True)
    model.load_state_dict(state)
    model.to(device).eval()
    with torch.no_grad():
        out = model(images.to(device), return_features=True)
    logits, features = out
    if "upsampled" not in features:
        raise UpbenchError(f"cell {cell_dir.name}: model(..., return_features=True) has no 'upsampled' feature")
    feature = features["upsampled"].float().cpu()
    panel.predictions[label] = logits.argmax(1).cpu().numpy()
    basis = pca_basis(feature)
    panel.pca[label] = np.stack([pca_rgb(f, basis) for f in feature])
    try:
        panel.mosaic[label] = mosaic_index(feature, panel.scale)
    except InputShapeError as err:
        panel.mosaic[label] = None
        panel.problems[label] = f"mosaic index not computed: {err}"


def cell_block_sums(run_dir: str | Path, cell_id: str, device: str = "cpu", batch_size: int = 8) -> np.ndarray:
    """``[n_images, 2]``: the border and within energy sums (:func:`upbench.reporting.mosaic.per_image_block_sums`)
    of the trained model's upsampled feature on every validation image of a train cell, in dataset
    order (the order of its per-image records), for the mosaic index with intervals."""
    from upbench.reporting.mosaic import per_image_block_sums

    cell_dir = Path(run_dir) / "cells" / cell_id
    config = cell_config(Path(run_dir), cell_id)
    val, num_classes, _ = load_val_set(config)
    model = load_cell_model(config, num_classes)
    model.load_state_dict(torch.load(cell_dir / "model.pt", map_location=device, weights_only=True))
    model.to(device).eval()
    scale = feature_scale(config)
    sums = []
    with torch.no_grad():
        for start in range(0, len(val), batch_size):
            images = [val[i][0] for i in range(start, min(start + batch_size, len(val)))]
            same_size = all(im.shape == images[0].shape for im in images)
            for chunk in [torch.stack(images)] if same_size else [im[None] for im in images]:
                _, features = model(chunk.to(device), return_features=True)
                sums.append(per_image_block_sums(features["upsampled"].float().cpu(), scale))
    return torch.cat(sums).numpy() if sums else np.zeros((0, 2))


def _class_cmap(num_classes: int) -> ListedColormap:
    base = matplotlib.colormaps["tab20"].resampled(max(num_classes, 2))
    return ListedColormap([base(i) for i in range(max(num_classes, 2))])


def _error_rgb(pred: np.ndarray, target: np.ndarray, ignore: int) -> np.ndarray:
    """Black where correct, red where wrong, grey where ignored."""
    rgb = np.zeros((*target.shape, 3))
    rgb[pred != target] = (0.9, 0.1, 0.1)
    rgb[target == ignore] = (0.5, 0.5, 0.5)
    return rgb


def qualitative_figure(panel: Panel) -> Figure:
    """Rows: the images and ground truth, then per operator prediction | error | PCA, per image."""
    labels = sorted(panel.predictions)
    n = len(panel.images)
    cmap = _class_cmap(panel.num_classes)
    with matplotlib.rc_context(STYLE | {"axes.grid": False}):
        fig = Figure(figsize=(3 * n * 1.3, (len(labels) + 1) * 1.4), layout="constrained")
        axes = fig.subplots(len(labels) + 1, 3 * n, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    masked = np.ma.masked_equal
    for i in range(n):
        axes[0, 3 * i].imshow(panel.images[i])
        axes[0, 3 * i + 1].imshow(
            masked(panel.targets[i], panel.ignore_index),
            cmap=cmap,
            vmin=0,
            vmax=panel.num_classes - 1,
            interpolation="nearest",
        )
        axes[0, 3 * i + 2].axis("off")
        axes[0, 3 * i].set_title(f"image {i}", fontsize=7)
        axes[0, 3 * i + 1].set_title("ground truth", fontsize=7)
    for r, label in enumerate(labels, start=1):
        value = panel.mosaic.get(label)
        axes[r, 0].set_ylabel(f"{label}\nmosaic {'n/a' if value is None else f'{value:.2f}'}", fontsize=7)
        for i in range(n):
            pred = panel.predictions[label][i]
            axes[r, 3 * i].imshow(pred, cmap=cmap, vmin=0, vmax=panel.num_classes - 1, interpolation="nearest")
            axes[r, 3 * i + 1].imshow(_error_rgb(pred, panel.targets[i], panel.ignore_index), interpolation="nearest")
            axes[r, 3 * i + 2].imshow(panel.pca[label][i], interpolation="nearest")
            if r == 1:
                for j, name in enumerate(("prediction", "error", "PCA of upsampled")):
                    axes[r, 3 * i + j].set_title(name, fontsize=7)
    fig.suptitle(panel.title, fontsize=9)
    _class_legend(fig, panel, cmap)
    return fig


def _class_legend(fig: Figure, panel: Panel, cmap: ListedColormap) -> None:
    """A legend of the class colours: the classes of the ground truth and predictions shown, by pixel
    count (at most :data:`LEGEND_CLASSES`), with the dataset's names where known."""
    from matplotlib.patches import Patch

    maps = [panel.targets, *panel.predictions.values()]
    counts = np.zeros(max(panel.num_classes, 1), dtype=np.int64)
    for m in maps:
        valid = m[(m >= 0) & (m < panel.num_classes)]
        counts += np.bincount(valid.ravel(), minlength=len(counts))[: len(counts)]
    shown = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0][:LEGEND_CLASSES]
    if not shown:
        return
    names = panel.class_names if len(panel.class_names) == panel.num_classes else ()
    handles = [Patch(color=cmap(c), label=f"{c}: {names[c]}" if names else f"class {c}") for c in sorted(shown)]
    more = int((counts > 0).sum()) - len(shown)
    if more > 0:
        handles.append(Patch(color="white", label=f"... {more} more classes"))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6), fontsize=7,
               frameon=False)  # fmt: skip
