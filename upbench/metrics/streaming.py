"""Streaming segmentation metrics: accumulate with ``update``, read with ``compute``.

The state is a handful of count and sum tensors, so accumulating over batches, over ranks or at
once gives the same result. To combine ranks in a distributed evaluation, sum every state tensor
in place, e.g. ``for t in metrics.state_tensors().values(): torch.distributed.all_reduce(t)``
(build the object with ``device="cuda"`` for NCCL), then call :meth:`compute` on any rank.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from upbench.errors import InputShapeError
from upbench.metrics.bfscore import bf_counts, bf_image_scores, bf_scores
from upbench.metrics.biou import biou_counts_per_image
from upbench.metrics.confusion import confusion_matrix, nanmean, region_counts_per_image, region_scores, safe_ratio
from upbench.metrics.inputs import canonical_pairs, check_ignore_index, check_num_classes
from upbench.metrics.options import MetricOptions, parse_options


class SegmentationMetrics:
    """mIoU, aAcc, mAcc, BF and Boundary IoU accumulated over a dataset.

    Args:
        num_classes: number of classes ``K``; labels are ``0 .. K-1``.
        ignore_index: target label of pixels that never count (``None``: no such label).
        device: where the state lives; ``None`` follows the first ``update``'s data.
        per_image: also keep, per image and class, the counts every metric is computed from
            (:meth:`per_image_counts`; see :mod:`upbench.metrics.per_image`).
        **options: see :class:`~upbench.metrics.options.MetricOptions`.

    Example:
        >>> m = SegmentationMetrics(2)
        >>> m.update(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 255]]))
        >>> round(m.compute()["mIoU"], 4)
        0.5
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        *,
        device: str | torch.device | None = None,
        per_image: bool = False,
        **options: Any,
    ) -> None:
        check_num_classes(num_classes)
        check_ignore_index(ignore_index)
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.options: MetricOptions = parse_options(options)
        self._fixed_device = device
        self.per_image = bool(per_image)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        k, device = self.num_classes, torch.device(self._fixed_device or "cpu")
        self._state: dict[str, Tensor] = {
            "confusion": torch.zeros(k, k, dtype=torch.int64, device=device),
            "biou_inter": torch.zeros(k, dtype=torch.int64, device=device),
            "biou_union": torch.zeros(k, dtype=torch.int64, device=device),
            "biou_fixed_inter": torch.zeros(k, dtype=torch.int64, device=device),
            "biou_fixed_union": torch.zeros(k, dtype=torch.int64, device=device),
            "bf_class_sum": torch.zeros(3, k, dtype=torch.float64, device=device),  # P, R, F1
            "bf_class_count": torch.zeros(k, dtype=torch.int64, device=device),
            "bf_image_sum": torch.zeros(3, dtype=torch.float64, device=device),  # P, R, F1
            "bf_image_count": torch.zeros((), dtype=torch.int64, device=device),
            "bf_tolerance_sum": torch.zeros((), dtype=torch.float64, device=device),  # px, over images
            "image_count": torch.zeros((), dtype=torch.int64, device=device),
        }
        self._images: list[dict[str, Tensor]] = []
        self._empty = True

    def to(self, device: str | torch.device) -> SegmentationMetrics:
        """Move the state to ``device`` (returns ``self``)."""
        self._fixed_device = device
        self._state = {name: t.to(device) for name, t in self._state.items()}
        return self

    def update(self, preds: Any, targets: Any) -> None:
        """Add label maps: ``(H, W)``, ``(N, H, W)`` or lists of such (sizes may differ)."""
        pairs = canonical_pairs(preds, targets, self.num_classes, self.ignore_index)
        if not pairs:
            return
        if self._empty and self._fixed_device is None:
            self._state = {name: t.to(pairs[0][0].device) for name, t in self._state.items()}
        for pred, target in pairs:
            self._add(pred, target)
        self._empty = False

    def _add(self, pred: Tensor, target: Tensor) -> None:
        k, opts, state = self.num_classes, self.options, self._state
        device = state["confusion"].device
        n, (h, w) = target.shape[0], target.shape[-2:]
        state["confusion"] += confusion_matrix(pred, target, k).to(device)
        state["image_count"] += n
        radius = opts.bf_radius(h, w)
        record: dict[str, Tensor] = {}
        if self.per_image:
            record = {name: t.cpu() for name, t in region_counts_per_image(pred, target, k).items()}
            record["size"] = torch.tensor([[h, w]] * n, dtype=torch.int64)
        if not opts.boundary:
            self._images += [record] if record else []
            return
        state["bf_tolerance_sum"] += radius * n
        widths = (opts.biou_width(h, w), opts.biou_fixed_px)
        for prefix, (inter, union) in zip(("biou", "biou_fixed"), biou_counts_per_image(pred, target, k, widths)):
            state[f"{prefix}_inter"] += inter.sum(0).to(device)
            state[f"{prefix}_union"] += union.sum(0).to(device)
            if self.per_image:
                record[f"{prefix}_inter"], record[f"{prefix}_union"] = inter.cpu(), union.cpu()
        counts = bf_counts(pred, target, k, radius)
        precision, recall, f1, present = bf_scores(counts)
        prf = torch.stack([precision, recall, f1]) * present  # (3, N, K)
        state["bf_class_sum"] += prf.sum(1).to(device)
        state["bf_class_count"] += present.sum(0).to(device)
        per_image, has_class = bf_image_scores(precision, recall, f1, present)  # (3, N), (N,)
        state["bf_image_sum"] += (per_image * has_class).sum(1).to(device)
        state["bf_image_count"] += has_class.sum().to(device)
        if self.per_image:
            record.update({f"bf_{name}": t.cpu() for name, t in counts.items()})
            record["bf_tolerance_px"] = torch.full((n,), radius, dtype=torch.float64)
            self._images.append(record)

    def per_image_counts(self) -> dict[str, Tensor]:
        """The per-image counts seen since the last reset, images in ``update`` order.

        Needs ``per_image=True``. Values are CPU tensors with images on dim 0: ``(N, K)`` counts
        (``area_inter``, ``area_target``, ``area_pred``; with boundaries also ``biou_inter``,
        ``biou_union``, ``biou_fixed_inter``, ``biou_fixed_union``, ``bf_pred_total``,
        ``bf_pred_matched``, ``bf_target_total``, ``bf_target_matched``, ``bf_in_pred``,
        ``bf_in_target``), ``size`` ``(N, 2)`` (height, width) and ``bf_tolerance_px`` ``(N,)``.
        Summed over images they give the state of :meth:`state_tensors` (see
        :func:`upbench.metrics.per_image.scores_from_counts`).
        """
        if not self.per_image:
            raise InputShapeError("per_image_counts() needs SegmentationMetrics(..., per_image=True)")
        if not self._images:
            return {}
        return {name: torch.cat([r[name] for r in self._images]) for name in self._images[0]}

    def compute(self) -> dict[str, Any]:
        """The metrics over everything seen since the last reset (see :mod:`upbench.metrics`)."""
        state = {name: t.cpu() for name, t in self._state.items()}
        out: dict[str, Any] = region_scores(state["confusion"])
        out["BF_tolerance_px"] = float(safe_ratio(state["bf_tolerance_sum"], state["image_count"]))
        nan_list = [math.nan] * self.num_classes
        fixed_key = f"BIoU_{self.options.biou_fixed_px}px"
        if not self.options.boundary:
            out.update({"BF": math.nan, "BIoU": math.nan, fixed_key: math.nan, "BF_tolerance_px": math.nan})
            out.update({"BF_precision": math.nan, "BF_recall": math.nan})
            out.update({"BF_class": nan_list, "BIoU_class": nan_list, f"{fixed_key}_class": nan_list})
            return out
        for key, prefix in (("BIoU", "biou"), (fixed_key, "biou_fixed")):
            per_class = safe_ratio(state[f"{prefix}_inter"], state[f"{prefix}_union"])
            out[key] = nanmean(per_class)
            out[f"{key}_class"] = per_class.tolist()
        image = safe_ratio(state["bf_image_sum"], state["bf_image_count"].expand(3))
        out["BF"], out["BF_precision"], out["BF_recall"] = float(image[2]), float(image[0]), float(image[1])
        out["BF_class"] = safe_ratio(state["bf_class_sum"][2], state["bf_class_count"]).tolist()
        return out

    def state_tensors(self) -> dict[str, Tensor]:
        """The live state tensors by name; summing them over ranks (in place) merges the ranks."""
        return self._state

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        """Replace the state with ``state`` (names and shapes as :meth:`state_tensors`)."""
        if set(state) != set(self._state):
            raise InputShapeError(f"state must have the keys {sorted(self._state)}, got {sorted(state)}")
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(self._state[name].shape):
                raise InputShapeError(
                    f"state {name!r} has shape {tuple(tensor.shape)}, expected {tuple(self._state[name].shape)}"
                )
        device = self._state["confusion"].device
        self._state = {n: t.detach().to(device, self._state[n].dtype).clone() for n, t in state.items()}
        self._empty = False

    def merge(self, other: SegmentationMetrics) -> None:
        """Add the state of ``other`` (same classes and options) to this one."""
        if (other.num_classes, other.options) != (self.num_classes, self.options):
            raise InputShapeError("can only merge metrics with the same num_classes and options")
        for name, tensor in other.state_tensors().items():
            self._state[name] += tensor.to(self._state[name].device)
        self._images += other._images
        self._empty = self._empty and other._empty
