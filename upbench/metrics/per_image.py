"""Per-image metric counts: store them, read them, recompute the metrics on any image subset.

A train cell writes ``cells/<cell_id>/per_image.parquet``: one row per validation image and
class (columnar, long form), with the counts that :class:`~upbench.metrics.SegmentationMetrics`
sums over the dataset. Columns (integers unless noted):

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
:mod:`upbench.metrics.bfscore`). :func:`scores_from_counts` recomputes all three from these
counts for any weighting of the images (a subset is 0/1 weights, a bootstrap resample is draw
counts), with the same functions as the streaming metrics, so weights of one reproduce
:func:`upbench.metrics.evaluate` (tested to 1e-12).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from upbench.metrics.bfscore import bf_image_scores, bf_scores
from upbench.metrics.confusion import safe_ratio

FILE_NAME = "per_image.parquet"
#: ``(N, K)`` count columns (the BF and BIoU ones only with boundaries).
COUNT_COLUMNS = (
    "area_inter",
    "area_target",
    "area_pred",
    "biou_inter",
    "biou_union",
    "biou_fixed_inter",
    "biou_fixed_union",
    "bf_pred_total",
    "bf_pred_matched",
    "bf_target_total",
    "bf_target_matched",
    "bf_in_pred",
    "bf_in_target",
)


def counts_to_frame(counts: dict[str, Tensor], image_index: list[int] | None = None) -> pd.DataFrame:
    """The long table of :meth:`SegmentationMetrics.per_image_counts` (one row per image and class)."""
    if not counts:
        return pd.DataFrame(columns=["image", "class", "height", "width", *COUNT_COLUMNS])
    n, k = counts["area_inter"].shape
    index = np.arange(n) if image_index is None else np.asarray(image_index, dtype=np.int64)
    if len(index) != n:
        raise ValueError(f"image_index has {len(index)} entries for {n} images")
    frame = {
        "image": np.repeat(index, k),
        "class": np.tile(np.arange(k, dtype=np.int64), n),
        "height": np.repeat(counts["size"][:, 0].numpy(), k),
        "width": np.repeat(counts["size"][:, 1].numpy(), k),
    }
    if "bf_tolerance_px" in counts:
        frame["bf_tolerance_px"] = np.repeat(counts["bf_tolerance_px"].numpy(), k)
    for name in COUNT_COLUMNS:
        if name in counts:
            values = counts[name].numpy().reshape(-1)
            frame[name] = values.astype(bool) if name.startswith("bf_in_") else values.astype(np.int64)
    return pd.DataFrame(frame).sort_values(["image", "class"], kind="mergesort").reset_index(drop=True)


def write_per_image(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as Parquet atomically (a temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_per_image(path: str | Path) -> pd.DataFrame:
    """The table written by :func:`write_per_image`."""
    return pd.read_parquet(path)


def frame_to_arrays(frame: pd.DataFrame) -> dict[str, Tensor]:
    """``(N, K)`` tensors per count column (images in ascending ``image`` order) and ``image`` ``(N,)``."""
    frame = frame.sort_values(["image", "class"], kind="mergesort")
    images = frame["image"].drop_duplicates().to_numpy()
    n, k = len(images), int(frame["class"].max()) + 1 if len(frame) else 0
    if n * k != len(frame):
        raise ValueError(f"per-image table is not one row per image and class ({len(frame)} rows, {n}x{k})")
    out = {"image": torch.from_numpy(images.astype(np.int64))}
    for name in COUNT_COLUMNS:
        if name in frame:
            out[name] = torch.from_numpy(frame[name].to_numpy().reshape(n, k).astype(np.int64))
    return out


def scores_from_counts(counts: dict[str, Tensor], weights: Tensor | None = None) -> dict[str, Tensor]:
    """mIoU, BF and BIoU from per-image counts, for each row of ``weights``.

    Args:
        counts: ``(N, K)`` count tensors by column name (as :func:`frame_to_arrays` or
            :meth:`SegmentationMetrics.per_image_counts`).
        weights: ``(B, N)`` non-negative image weights (``None``: one row of ones, the whole set).

    Returns:
        ``{"mIoU", "BIoU", "BIoU_fixed", "BF"}`` float64 tensors of shape ``(B,)`` (the boundary
        keys only when the counts have them). mIoU and BIoU: counts summed with the weights,
        per-class ratio, NaN-mean over classes with a non-empty union. BF: weighted mean of the
        per-image BF over images with a present class.
    """
    n = counts["area_inter"].shape[0]
    w = torch.ones(1, n, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    out: dict[str, Tensor] = {}
    inter, target, pred = (counts[c].double() for c in ("area_inter", "area_target", "area_pred"))
    out["mIoU"] = _nanmean_rows(safe_ratio(w @ inter, w @ (target + pred - inter)))
    for key, prefix in (("BIoU", "biou"), ("BIoU_fixed", "biou_fixed")):
        if f"{prefix}_inter" in counts:
            band_inter, band_union = counts[f"{prefix}_inter"].double(), counts[f"{prefix}_union"].double()
            out[key] = _nanmean_rows(safe_ratio(w @ band_inter, w @ band_union))
    if "bf_pred_total" in counts:
        bf_counts = {name[3:]: counts[name] for name in COUNT_COLUMNS if name.startswith("bf_")}
        per_image, has_class = bf_image_scores(*bf_scores(bf_counts))
        bf = per_image[2] * has_class  # (N,)
        out["BF"] = safe_ratio(w @ bf, w @ has_class.double())
    return out


def _nanmean_rows(values: Tensor) -> Tensor:
    """Mean over the last dim of the non-NaN entries, NaN for a row without any."""
    finite = ~values.isnan()
    total = torch.where(finite, values, 0.0).sum(-1)
    return safe_ratio(total, finite.sum(-1))
