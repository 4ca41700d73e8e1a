"""The data model of the comparison tables: columns, cells, tables and which columns are shown.

:class:`Column` says how a metric is shown, :class:`Entry` is one cell in display units,
:class:`Table` a titled table of them; :func:`train_columns` follows the metric registry (each
headline metric in %, then the costs), :func:`select_columns` picks what a report shows. Built by
:mod:`upbench.reporting.tables`, written as text by :mod:`upbench.reporting.table_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from upbench.metrics import headline_metrics, headline_scores

REFERENCE = "bilinear"
CONTROL = "guided_bilinear"
MISSING = "—"
#: Differences (often a fraction of a point) get one decimal more than the values they compare.
DIFF_EXTRA_DECIMALS = 1
SPREAD_METRICS = ("latency_forward", "peak_memory")


@dataclass(frozen=True)
class Column:
    """How a metric is shown: header, multiplier to the displayed unit, decimals, better direction."""

    metric: str
    header: str
    factor: float
    decimals: int
    higher_is_better: bool
    optional: bool = False


#: Cost columns of train tables, after the accuracy columns of :func:`train_columns`.
COST_COLUMNS = (
    Column("params", "params (M)", 1e-6, 3, False),
    Column("operator_params", "op. params (K)", 1e-3, 1, False, optional=True),
    Column("gmacs", "GMACs", 1.0, 3, False),
    Column("latency_forward", "latency (ms)", 1.0, 2, False),
    Column("peak_memory", "peak mem. (MiB)", 1.0, 1, False),
)


def accuracy_metrics() -> tuple[str, ...]:
    """The accuracy columns: the registered headline metrics (``mIoU``, ``BF``, ``BIoU``, ...)."""
    return headline_metrics()


def train_columns() -> tuple[Column, ...]:
    """The columns of a train table: each headline metric in %, then the costs."""
    accuracy = tuple(Column(s.key, f"{s.key} (%)", 100.0, 1, s.higher_is_better) for s in headline_scores())
    return accuracy + COST_COLUMNS


OPS_COLUMNS = (
    Column("params", "params (K)", 1e-3, 1, False),
    Column("gmacs", "MMACs", 1e3, 2, False),
    Column("latency_forward", "fwd (ms)", 1.0, 2, False),
    Column("latency_forward_backward", "fwd+bwd (ms)", 1.0, 2, False, optional=True),
    Column("peak_memory", "peak mem. (MiB)", 1.0, 2, False),
    Column("peak_memory_forward_backward", "fwd+bwd mem. (MiB)", 1.0, 2, False, optional=True),
)
#: What a report shows by default: the accuracy metrics (:func:`accuracy_metrics`), then the
#: operator's cost (``--metrics``, ``--columns`` of ``upbench report`` choose others from
#: :func:`train_columns`).
DEFAULT_COST_COLUMNS = ("operator_params", "gmacs", "latency_forward")
TRAIN_GROUP = ("architecture", "protocol", "preset", "dataset", "scale")
OPS_GROUP = ("scale", "batch", "in_channels", "lr_height", "lr_width", "guide_channels", "dtype", "device")


@dataclass(frozen=True)
class Entry:
    """One table cell, already in display units."""

    mean: float | None
    std: float | None
    n: int
    delta: float | None
    best: bool
    decimals: int
    ci: tuple[float, float] | None = None  # interval of ``delta``
    marked: bool = False  # the difference is significant (interval excludes 0, or IQRs apart)
    control: tuple[float, float, float, bool] | None = None  # gain over guided_bilinear: d, lo, hi, marked
    spread: tuple[float, float] | None = None  # q1, q3


@dataclass(frozen=True)
class Table:
    """A titled table: ``rows`` are ``(label, seeds, entries)``; ``stem`` names its files."""

    title: str
    stem: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, int, tuple[Entry, ...]], ...]
    reference: str | None
    notes: tuple[str, ...] = ()
    intervals: bool = False

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(c.header for c in self.columns)


def _round(value: float, decimals: int) -> float:
    return float(f"{value:.{decimals}f}")


def select_columns(metrics: Any = None, columns: Any = None) -> tuple[Column, ...]:
    """The train columns to show: ``metrics`` (accuracy metrics, default the headline metrics: mIoU,
    BF, BIoU and any registered one) then ``columns`` (costs, default operator params, GMACs,
    latency), each a list or a comma string of metric names from :func:`train_columns`; unknown
    names raise :class:`UpbenchError`."""
    from upbench.errors import UpbenchError

    by_name = {c.metric: c for c in train_columns()}
    chosen = []
    defaults = ((metrics, accuracy_metrics(), "--metrics"), (columns, DEFAULT_COST_COLUMNS, "--columns"))
    for given, default, what in defaults:
        names = (
            default if given is None else [n.strip() for n in (given.split(",") if isinstance(given, str) else given)]
        )
        unknown = [n for n in names if n not in by_name]
        if unknown or not names:
            raise UpbenchError(
                f"{what}: unknown or empty {', '.join(unknown) or 'list'}; choose from {', '.join(by_name)}"
            )
        chosen += [by_name[n] for n in names if by_name[n] not in chosen]
    return tuple(chosen)
