"""The results rows of a train cell's metric values, as the metrics declare them (their ``Score``s)."""

from __future__ import annotations

from typing import Any

from upbench.metrics.options import parse_options
from upbench.metrics.registry import create_metrics
from upbench.results import row


def metric_rows(values: dict[str, Any], num_classes: int, **options: Any) -> list[dict[str, Any]]:
    """One row per reported value of ``values`` (as :meth:`SegmentationMetrics.compute` returns them):
    every metric's summary scores, then its details, then one row ``<key>_class_<k>`` per class
    of its per-class scores; metrics in report order."""
    reported = [s for m in create_metrics(num_classes, parse_options(options)) for s in m.scores]
    rows = [row(s.key, values[s.key], s.unit) for s in reported if s.role == "summary" and s.key in values]
    rows += [row(s.key, values.get(s.key), s.unit) for s in reported if s.role == "detail"]
    for s in reported:
        if s.role == "per_class":
            rows += [row(f"{s.key}_class_{k}", v, s.unit) for k, v in enumerate(values.get(s.key, []))]
    return rows
