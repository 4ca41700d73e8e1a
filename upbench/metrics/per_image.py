"""Per-image metric records: store them, read them, recompute the metrics on any image subset.

A train cell writes ``cells/<cell_id>/per_image.parquet``: one row per validation image and
class (columnar, long form), with every registered metric's per-image record (its declared
state or record columns, :mod:`upbench.metrics.base`; a per-image number is repeated on each of
the image's rows). The built-in metrics' columns (integers unless noted):

=====================  ==========================================================================
``image``              index of the image in the validation set
``class``              class index ``k``
``height``, ``width``  the label map's size (px)
``bf_tolerance_px``    the BF tolerance used on this image (float, px)
``area_inter``         labelled pixels of class k predicted as k (the confusion diagonal)
``area_target``        labelled pixels of class k in the target (confusion row sum)
``area_pred``          labelled pixels predicted as k (confusion column sum)
``biou_inter``,        Boundary IoU band intersection and union at the diagonal-relative width
``biou_union``
``biou_fixed_inter``,  the same at the fixed width (``BIoU_3px``)
``biou_fixed_union``
``bf_pred_total``,     predicted contour pixels of class k: all, and within the tolerance of a
``bf_pred_matched``    target contour pixel of class k (BF precision = matched / total)
``bf_target_total``,   target contour pixels: all, and matched (BF recall = matched / total)
``bf_target_matched``
``bf_in_pred``,        whether class k has a labelled pixel in the prediction / target (bool)
``bf_in_target``
=====================  ==========================================================================

Boundary columns are absent when the metrics ran with ``boundary=False``. mIoU and BIoU are
dataset-level ratios of summed counts; BF is a mean of per-image scores (see
:mod:`upbench.metrics.bfscore`). :func:`scores_from_counts` recomputes every metric's summary
scores from these records for any weighting of the images (a subset is 0/1 weights, a bootstrap
resample is draw counts), through the metric's own ``state_of`` and ``summary``, so weights of
one reproduce :func:`upbench.metrics.evaluate` (tested to 1e-12).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from upbench.files import naming, write_atomic

FILE_NAME = "per_image.parquet"
#: Columns of every table whatever the metrics: the image, the class and the label map's size.
INDEX_COLUMNS = ("image", "class", "height", "width")


def record_columns() -> dict[str, Any]:
    """Every registered metric's per-image record columns (``name -> State``), in report order."""
    from upbench.metrics.registry import create_metrics

    return {name: spec for metric in create_metrics(1) for name, spec in metric.records.items()}


def counts_to_frame(counts: dict[str, Tensor], image_index: list[int] | None = None) -> pd.DataFrame:
    """The long table of :meth:`SegmentationMetrics.per_image_counts` (one row per image and class)."""
    columns = record_columns()
    if not counts:
        return pd.DataFrame(columns=[*INDEX_COLUMNS, *columns])
    n = counts["size"].shape[0]
    k = max((t.shape[1] for name, t in counts.items() if name != "size" and t.dim() == 2), default=1)
    index = np.arange(n) if image_index is None else np.asarray(image_index, dtype=np.int64)
    if len(index) != n:
        raise ValueError(f"image_index has {len(index)} entries for {n} images")
    frame = {
        "image": np.repeat(index, k),
        "class": np.tile(np.arange(k, dtype=np.int64), n),
        "height": np.repeat(counts["size"][:, 0].numpy(), k),
        "width": np.repeat(counts["size"][:, 1].numpy(), k),
    }
    present = [name for name in columns if name in counts]
    for name in sorted(present, key=lambda c: columns[c].per_class):  # per-image numbers first
        values = counts[name].numpy()
        values = values.reshape(-1) if columns[name].per_class else np.repeat(values, k)
        frame[name] = values.astype(_numpy_dtype(columns[name].dtype))
    return pd.DataFrame(frame).sort_values(["image", "class"], kind="mergesort").reset_index(drop=True)


def _numpy_dtype(dtype: torch.dtype) -> Any:
    return bool if dtype == torch.bool else np.float64 if dtype.is_floating_point else np.int64


def write_per_image(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as Parquet atomically (a temporary file in the same folder, then rename; a
    failed write leaves no temporary file and raises an ``OSError`` naming ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda fh: frame.to_parquet(fh, index=False))


def read_per_image(path: str | Path) -> pd.DataFrame:
    """The table written by :func:`write_per_image` (an ``OSError`` names ``path``: Arrow's do not)."""
    with naming(path):
        return pd.read_parquet(path)


def frame_to_arrays(frame: pd.DataFrame) -> dict[str, Tensor]:
    """The records as tensors (images in ascending ``image`` order): ``(N, K)`` per class, ``(N,)``
    per image, for every registered metric's column in the table, and ``image`` ``(N,)``."""
    frame = frame.sort_values(["image", "class"], kind="mergesort")
    images = frame["image"].drop_duplicates().to_numpy()
    n, k = len(images), int(frame["class"].max()) + 1 if len(frame) else 0
    if n * k != len(frame):
        raise ValueError(f"per-image table is not one row per image and class ({len(frame)} rows, {n}x{k})")
    out = {"image": torch.from_numpy(images.astype(np.int64))}
    for name, spec in record_columns().items():
        if name in frame:
            values = frame[name].to_numpy().reshape(n, k).astype(_numpy_dtype(spec.dtype))
            out[name] = torch.from_numpy(values if spec.per_class else np.ascontiguousarray(values[:, 0]))
    return out


def scores_from_counts(counts: dict[str, Tensor], weights: Tensor | None = None) -> dict[str, Tensor]:
    """Every metric's summary scores from per-image records, for each row of ``weights``.

    Args:
        counts: per-image record tensors by column name (as :func:`frame_to_arrays` or
            :meth:`SegmentationMetrics.per_image_counts`).
        weights: ``(B, N)`` non-negative image weights (``None``: one row of ones, the whole set).

    Returns:
        ``{"mIoU", "aAcc", "mAcc", "BF", "BF_precision", "BF_recall", "BIoU", "BIoU_3px", ...}``
        float64 tensors of shape ``(B,)``: each metric whose records are all in ``counts``, its
        per-image state weighted and summed (:func:`upbench.metrics.base.weighted_state`), then its
        ``summary``. mIoU and BIoU: per-class ratio of weighted counts, NaN-mean over classes with a
        non-empty union. BF: weighted mean of the per-image BF over images with a present class.
    """
    from upbench.metrics.base import weighted_state
    from upbench.metrics.registry import create_metrics

    records = [t for name, t in counts.items() if name not in ("image", "size")]
    if not records:
        return {}
    n, k = records[0].shape[0], max((t.shape[1] for t in records if t.dim() == 2), default=1)
    w = torch.ones(1, n, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    out: dict[str, Tensor] = {}
    for metric in create_metrics(k):
        if all(name in counts for name in metric.records):
            out.update(metric.summary(weighted_state(metric, counts, w)))
    return out
