"""Streaming segmentation metrics: accumulate with ``update``, read with ``compute``.

:class:`SegmentationMetrics` runs every registered metric (:mod:`upbench.metrics.registry`) on
each batch and merges their declared states (:mod:`upbench.metrics.base`), so accumulating over
batches, over ranks or at once gives the same result. To combine ranks in a distributed
evaluation, merge every state tensor in place by its rule, e.g. ``for name, t in
metrics.state_tensors().items(): torch.distributed.all_reduce(t, op=REDUCE_OPS[metrics.reductions()[name]])``
(build the object with ``device="cuda"`` for NCCL), then call :meth:`compute` on any rank.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from upbench.errors import InputShapeError
from upbench.metrics.base import merge_into, reduce_images
from upbench.metrics.inputs import canonical_pairs, check_ignore_index, check_num_classes
from upbench.metrics.options import MetricOptions, parse_options
from upbench.metrics.registry import create_metrics


class SegmentationMetrics:
    """Every registered metric (mIoU, aAcc, mAcc, BF, Boundary IoU, ...) accumulated over a dataset.

    Args:
        num_classes: number of classes ``K``; labels are ``0 .. K-1``.
        ignore_index: target label of pixels that never count (``None``: no such label).
        device: where the state lives; ``None`` follows the first ``update``'s data.
        per_image: also keep each image's record of every metric, what its state is computed
            from (:meth:`per_image_counts`; see :mod:`upbench.metrics.per_image`).
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
        device = torch.device(self._fixed_device or "cpu")
        self._metrics = create_metrics(self.num_classes, self.options)
        self._active = [m for m in self._metrics if self.options.boundary or not m.needs_boundary]
        self._state: dict[str, Tensor] = {}
        self._reduce: dict[str, str] = {}
        for metric in self._active:
            self._state.update(metric.initial_state(device))
            self._reduce.update({name: spec.reduce for name, spec in metric.states.items()})
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
        n, (h, w) = target.shape[0], target.shape[-2:]
        record: dict[str, Tensor] = {"size": torch.tensor([[h, w]] * n, dtype=torch.int64)}
        for metric in self._active:
            records = metric.update(pred, target)
            for name, contribution in metric.state_of(records).items():
                merge_into(self._state[name], reduce_images(contribution, self._reduce[name]), self._reduce[name])
            if self.per_image:
                record.update({name: records[name].cpu().to(spec.dtype) for name, spec in metric.records.items()})
        if self.per_image:
            self._images.append(record)

    def per_image_counts(self) -> dict[str, Tensor]:
        """The per-image counts seen since the last reset, images in ``update`` order.

        Needs ``per_image=True``. Values are CPU tensors with images on dim 0: ``size`` ``(N, 2)``
        (height, width) and every active metric's declared records, ``(N, K)`` per class or
        ``(N,)`` (built-ins: ``area_inter``, ``area_target``, ``area_pred``; with boundaries also
        ``biou_inter``, ``biou_union``, ``biou_fixed_inter``, ``biou_fixed_union``,
        ``bf_pred_total``, ``bf_pred_matched``, ``bf_target_total``, ``bf_target_matched``,
        ``bf_in_pred``, ``bf_in_target`` and ``bf_tolerance_px``). Each metric's
        ``state_of(records)`` merged over images gives its part of :meth:`state_tensors` (see
        :func:`upbench.metrics.per_image.scores_from_counts`).
        """
        if not self.per_image:
            raise InputShapeError("per_image_counts() needs SegmentationMetrics(..., per_image=True)")
        if not self._images:
            return {}
        return {name: torch.cat([r[name] for r in self._images]) for name in self._images[0]}

    def compute(self) -> dict[str, Any]:
        """The metrics over everything seen since the last reset (see :mod:`upbench.metrics`);
        a metric skipped by the options (``boundary=False``) has its values of no data (NaN)."""
        state = {name: t.cpu() for name, t in self._state.items()}
        out: dict[str, Any] = {}
        for metric in self._metrics:
            own = {name: state[name] for name in metric.states} if metric in self._active else metric.initial_state()
            out.update(metric.compute(own))
        return out

    def metrics(self) -> list[Any]:
        """The metric instances this object runs (:class:`upbench.metrics.base.Metric`), in report order."""
        return list(self._metrics)

    def reductions(self) -> dict[str, str]:
        """How each state tensor merges (``sum``, ``max`` or ``min``), by name."""
        return dict(self._reduce)

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
        self._state = {n: t.detach().to(self._state[n].device, self._state[n].dtype).clone() for n, t in state.items()}
        self._empty = False

    def merge(self, other: SegmentationMetrics) -> None:
        """Add the state of ``other`` (same classes and options) to this one."""
        if (other.num_classes, other.options) != (self.num_classes, self.options):
            raise InputShapeError("can only merge metrics with the same num_classes and options")
        for name, tensor in other.state_tensors().items():
            merge_into(self._state[name], tensor, self._reduce[name])
        self._images += other._images
        self._empty = self._empty and other._empty
