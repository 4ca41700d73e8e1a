"""The metric registry: ``@register_metric(name)`` on a :class:`~upbench.metrics.base.Metric` subclass.

Built-in metrics are the public modules of ``upbench.metrics`` that register one; third-party
packages add modules through the entry-point group ``upbench.metrics``. Everything that reports
metrics reads this registry: the streaming metrics, the rows of a train cell, the per-image
records, the bootstrap comparisons and the report's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from upbench.metrics.base import Metric, Score
from upbench.metrics.options import MetricOptions
from upbench.plugins import Registry

ENTRY_POINT_GROUP = "upbench.metrics"

_metrics: Registry[type[Metric]] = Registry("metric", "upbench.metrics", ENTRY_POINT_GROUP)

M = TypeVar("M", bound=type[Metric])


def register_metric(name: str) -> Callable[[M], M]:
    """Class decorator that registers a :class:`Metric` subclass under ``name``. Its state names
    must not be taken by another metric (they share one state dict and one per-image table)."""

    def decorate(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Metric)):
            raise TypeError(f"@register_metric('{name}') must decorate an upbench.metrics.Metric subclass")
        cls.name = name
        probe = cls(1)
        for other in _metrics.entries():
            if other is cls:
                continue
            taken = other(1)
            clash = (set(probe.states) | set(probe.records)) & (set(taken.states) | set(taken.records))
            clash |= {s.key for s in probe.scores} & {s.key for s in taken.scores}
            if clash:
                raise ValueError(f"metric '{name}' reuses names of metric '{other.name}': {', '.join(sorted(clash))}")
        _metrics.add(name, cls, cls.__module__)
        return cls

    return decorate


def unregister_metric(name: str) -> None:
    """Remove ``name`` (for tests and interactive sessions)."""
    _metrics.remove(name)


def metric_classes() -> list[type[Metric]]:
    """The registered metrics in report order (``order``, then name)."""
    return sorted(_metrics.entries(), key=lambda cls: (cls.order, cls.name))


def get_metric(name: str) -> type[Metric]:
    """The metric registered under ``name``."""
    return _metrics.get(name)


def create_metrics(num_classes: int, options: MetricOptions | None = None) -> list[Metric]:
    """One instance of every registered metric, in report order."""
    return [cls(num_classes, options) for cls in metric_classes()]


def scores(options: MetricOptions | None = None) -> list[Score]:
    """Every reported value of every metric, in report order."""
    return [s for m in create_metrics(1, options) for s in m.scores]


def headline_scores() -> tuple[Score, ...]:
    """The headline summary scores (table columns, compared by default): ``mIoU``, ``BF``, ``BIoU``, ..."""
    return tuple(s for s in scores() if s.role == "summary" and s.headline)


def headline_metrics() -> tuple[str, ...]:
    """The keys of :func:`headline_scores`."""
    return tuple(s.key for s in headline_scores())


def summary_metrics() -> tuple[str, ...]:
    """The keys of every summary score (what the per-image records can recompute)."""
    return tuple(s.key for s in scores() if s.role == "summary")


def higher_is_better(key: str) -> bool:
    """Whether a larger value of the reported value ``key`` is better (True for keys no metric reports)."""
    return next((s.higher_is_better for s in scores() if s.key == key), True)
