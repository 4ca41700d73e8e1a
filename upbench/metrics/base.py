"""The contract of a metric: it declares its state and how to merge it, and computes from merged state.

A metric is a :class:`Metric` subclass in its own module, registered with
:func:`upbench.metrics.registry.register_metric`. In :meth:`Metric.setup` it declares its state
with :meth:`Metric.add_state` (as torchmetrics' ``add_state``): a count or sum per class
(``per_class=True``, shape ``(K,)``) or one number, and the rule that merges two of them
(``reduce="sum"``, ``"max"`` or ``"min"``). :meth:`Metric.update` returns each image's
contribution to that state (``(N, K)`` or ``(N,)`` tensors, images on dim 0) and
:meth:`Metric.compute` reads the merged state. Everything else follows from the declaration:

* the streaming :class:`~upbench.metrics.SegmentationMetrics` merges contributions over images,
  batches and ranks by the declared rules, and its ``compute`` includes this metric's values;
* each image's contribution is its *per-image record*, stored in ``per_image.parquet`` (one
  column per state; :mod:`upbench.metrics.per_image`);
* a bootstrap over validation images weights the records (:func:`weighted_state`: a resample is
  draw counts) and computes again, so ratio metrics are recomputed from summed counts, never
  averaged per image (this needs ``reduce="sum"``);
* :attr:`Metric.scores` names the values that become results rows (``role``), and whether a value
  is a headline metric: a column of the report's tables, compared by default with bootstrap
  intervals (:mod:`upbench.reporting.compare`).

A metric whose per-image record is not its state (boundary F1 stores contour counts and derives
per-image scores from them) declares its record columns with :meth:`Metric.add_record` and maps
them to its state in :meth:`Metric.state_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from upbench.errors import UpbenchError
from upbench.metrics.options import MetricOptions, default_options

REDUCTIONS = ("sum", "max", "min")


@dataclass(frozen=True)
class Score:
    """One value a metric computes: its key in ``compute()`` and how it is reported.

    ``role``: ``summary`` (one number; a results row, recomputed by the bootstrap), ``detail``
    (one number, a row after the summaries, e.g. the BF tolerance in px) or ``per_class`` (a
    list; rows ``<key>_class_<k>``). ``headline``: a column of the report's tables and compared
    by default (summary scores only).
    """

    key: str
    unit: str = "fraction"
    role: Literal["summary", "detail", "per_class"] = "summary"
    headline: bool = False
    higher_is_better: bool = True


@dataclass(frozen=True)
class State:
    """A declared state: ``(K,)`` per class or one number, its dtype and merge rule."""

    name: str
    per_class: bool
    dtype: torch.dtype
    reduce: Literal["sum", "max", "min"]


class Metric:
    """Base class of a metric computed over label maps (see the module docstring).

    Args:
        num_classes: number of classes ``K``.
        options: the shared metric options (tolerances of the boundary metrics).
    """

    #: Registered name (set by ``register_metric``).
    name: ClassVar[str] = ""
    #: Position among the metrics in rows, records and tables (ties by name).
    order: ClassVar[int] = 100
    #: Skipped (no records; its values those of no data, NaN) when ``MetricOptions.boundary`` is False.
    needs_boundary: ClassVar[bool] = False
    #: The values :meth:`compute` returns that are reported (may be set per instance in ``setup``).
    scores: tuple[Score, ...] = ()

    def __init__(self, num_classes: int, options: MetricOptions | None = None) -> None:
        self.num_classes = int(num_classes)
        self.options = options or default_options()
        self.states: dict[str, State] = {}
        self.records: dict[str, State] = {}
        self.setup()
        if not self.records:
            self.records = dict(self.states)

    # ------------------------------------------------------------------ declaration
    def setup(self) -> None:
        """Declare the state (:meth:`add_state`) and, if it differs from it, the per-image record."""
        raise NotImplementedError

    def add_state(
        self,
        name: str,
        *,
        per_class: bool = False,
        dtype: torch.dtype = torch.int64,
        reduce: Literal["sum", "max", "min"] = "sum",
    ) -> None:
        """Declare a state tensor: ``(K,)`` if ``per_class`` else a scalar, merged by ``reduce``."""
        if reduce not in REDUCTIONS:
            raise ValueError(f"metric '{self.name}': state '{name}' reduce must be one of {REDUCTIONS}, got {reduce!r}")
        if name in self.states:
            raise ValueError(f"metric '{self.name}': state '{name}' is declared twice")
        self.states[name] = State(name, per_class, dtype, reduce)

    def add_record(self, name: str, *, per_class: bool = True, dtype: torch.dtype = torch.int64) -> None:
        """Declare a per-image record column (only for metrics whose record is not their state)."""
        self.records[name] = State(name, per_class, dtype, "sum")

    # ------------------------------------------------------------------ per image and merged
    def update(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Each image's record: ``(N, K)`` or ``(N,)`` tensors of canonical maps ``pred``,
        ``target`` ``(N, H, W)`` (int64, ignored pixels ``-1`` in both; see :mod:`upbench.metrics.inputs`)."""
        raise NotImplementedError

    def state_of(self, records: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each image's contribution to the state, from its records (default: the records are the state)."""
        return {name: records[name] for name in self.states}

    def compute(self, state: dict[str, Tensor]) -> dict[str, Any]:
        """The metric's values (floats, lists per class) from its merged state (CPU tensors)."""
        raise NotImplementedError

    def summary(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """The ``summary`` scores ``(B,)`` of a batch of ``B`` states (every tensor with a leading
        ``B``; :func:`weighted_state`). The default computes each one; override it to vectorise."""
        batch = next(iter(state.values())).shape[0]
        values = [self.compute({k: v[b] for k, v in state.items()}) for b in range(batch)]
        keys = [s.key for s in self.scores if s.role == "summary"]
        return {k: torch.tensor([float(v[k]) for v in values], dtype=torch.float64) for k in keys}

    # ------------------------------------------------------------------ helpers
    def initial_state(self, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Every state at its neutral value (0 for sums, the dtype's extremes for max and min)."""
        out = {}
        for s in self.states.values():
            shape = (self.num_classes,) if s.per_class else ()
            if s.reduce == "sum":
                fill: float | int = 0
            else:
                info = torch.finfo(s.dtype) if s.dtype.is_floating_point else torch.iinfo(s.dtype)
                fill = info.min if s.reduce == "max" else info.max
            out[s.name] = torch.full(shape, fill, dtype=s.dtype, device=device)
        return out


def merge_into(total: Tensor, contribution: Tensor, reduce: str) -> None:
    """Merge ``contribution`` (same shape as ``total``) into ``total`` in place by ``reduce``."""
    contribution = contribution.to(total.device, total.dtype)
    if reduce == "sum":
        total += contribution
    elif reduce == "max":
        torch.maximum(total, contribution, out=total)
    else:
        torch.minimum(total, contribution, out=total)


def reduce_images(contribution: Tensor, reduce: str) -> Tensor:
    """Merge a batch of per-image contributions over dim 0 by ``reduce``."""
    if reduce == "sum":
        return contribution.sum(0)
    return contribution.amax(0) if reduce == "max" else contribution.amin(0)


def weighted_state(metric: Metric, records: dict[str, Tensor], weights: Tensor) -> dict[str, Tensor]:
    """The state of ``B`` weightings of the images: ``weights`` ``(B, N)`` times each image's
    contribution, summed (float64, ``(B, K)`` or ``(B,)``). A bootstrap resample is draw counts."""
    contributions = metric.state_of(records)
    for name in contributions:
        if metric.states[name].reduce != "sum":
            raise UpbenchError(
                f"metric '{metric.name}': state '{name}' merges by {metric.states[name].reduce}, so it cannot "
                "be recomputed on weighted images (bootstrap); only sums can"
            )
    n = weights.shape[-1]
    columns = [c.double().reshape(n, -1) for c in contributions.values()]
    summed = (weights @ torch.cat(columns, dim=1)).split([c.shape[1] for c in columns], dim=1)  # one product
    return {name: s if c.dim() == 2 else s[:, 0] for (name, c), s in zip(contributions.items(), summed)}
