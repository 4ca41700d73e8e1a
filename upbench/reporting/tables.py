"""Comparison tables (Markdown and LaTeX) from seed-aggregated results.

One table per group (architecture, protocol, preset, dataset, scale for train results; scale and
input size for ops results); one row per operator label, one column per metric. A cell shows the
mean over seeds, ``± std`` when there are several seeds (and the std is not 0), the difference to
the ``bilinear`` row in parentheses, and ``[n=k]`` when that metric has a different number of
seeds than the row. The
best value of each column (highest accuracy, lowest cost, compared at the printed precision) is
bold. Only this module rounds: stored values are never rounded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

REFERENCE = "bilinear"
MISSING = "—"


@dataclass(frozen=True)
class Column:
    """How a metric is shown: header, multiplier to the displayed unit, decimals, better direction."""

    metric: str
    header: str
    factor: float
    decimals: int
    higher_is_better: bool
    optional: bool = False


TRAIN_COLUMNS = (
    Column("mIoU", "mIoU (%)", 100.0, 2, True),
    Column("BF", "BF (%)", 100.0, 2, True),
    Column("BIoU", "BIoU (%)", 100.0, 2, True),
    Column("params", "params (M)", 1e-6, 3, False),
    Column("operator_params", "op. params (K)", 1e-3, 1, False, optional=True),
    Column("gmacs", "GMACs", 1.0, 3, False),
    Column("latency_forward", "latency (ms)", 1.0, 2, False),
    Column("peak_memory", "peak mem. (MiB)", 1.0, 1, False),
)
OPS_COLUMNS = (
    Column("params", "params (K)", 1e-3, 1, False),
    Column("gmacs", "MMACs", 1e3, 2, False),
    Column("latency_forward", "fwd (ms)", 1.0, 2, False),
    Column("latency_forward_backward", "fwd+bwd (ms)", 1.0, 2, False, optional=True),
    Column("peak_memory", "peak mem. (MiB)", 1.0, 2, False),
    Column("peak_memory_forward_backward", "fwd+bwd mem. (MiB)", 1.0, 2, False, optional=True),
)
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


@dataclass(frozen=True)
class Table:
    """A titled table: ``rows`` are ``(label, seeds, entries)``; ``stem`` names its files."""

    title: str
    stem: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, int, tuple[Entry, ...]], ...]
    reference: str | None


def _round(value: float, decimals: int) -> float:
    return float(f"{value:.{decimals}f}")


def build_table(summary: pd.DataFrame, columns: tuple[Column, ...], title: str, stem: str) -> Table:
    """A :class:`Table` of one group's aggregated rows (columns ``label, metric, mean, std, n``)."""
    present = set(summary["metric"])
    columns = tuple(c for c in columns if not c.optional or c.metric in present)
    labels = sorted(set(summary["label"]), key=lambda lab: (lab != REFERENCE, lab))
    stats = {(r.label, r.metric): (r.mean, r.std, int(r.n)) for r in summary.itertuples()}
    reference = REFERENCE if REFERENCE in labels else None
    best: dict[str, float] = {}
    for col in columns:
        shown = [
            _round(stats[(lab, col.metric)][0] * col.factor, col.decimals)
            for lab in labels
            if (lab, col.metric) in stats
        ]
        if shown:
            best[col.metric] = max(shown) if col.higher_is_better else min(shown)
    rows = []
    for lab in labels:
        seeds = max((stats[(lab, c.metric)][2] for c in columns if (lab, c.metric) in stats), default=0)
        entries = []
        for col in columns:
            if (lab, col.metric) not in stats:
                entries.append(Entry(None, None, 0, None, False, col.decimals))
                continue
            mean, std, n = stats[(lab, col.metric)]
            mean *= col.factor
            std = None if n < 2 or std is None or math.isnan(std) or std == 0 else std * abs(col.factor)
            ref = stats.get((reference, col.metric)) if reference and lab != reference else None
            delta = mean - ref[0] * col.factor if ref is not None else None
            is_best = len(labels) > 1 and _round(mean, col.decimals) == best[col.metric]
            entries.append(Entry(mean, std, n if n != seeds else 0, delta, is_best, col.decimals))
        rows.append((lab, seeds, tuple(entries)))
    return Table(title, stem, tuple(c.header for c in columns), tuple(rows), reference)


def _fmt(value: float, decimals: int, sign: bool = False) -> str:
    value = _round(value, decimals) + 0.0  # no "-0.00"
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def _entry_text(e: Entry, bold: tuple[str, str], pm: str) -> str:
    if e.mean is None:
        return MISSING
    mean = _fmt(e.mean, e.decimals)
    text = f"{bold[0]}{mean}{bold[1]}" if e.best else mean
    if e.std is not None:
        text += f" {pm} {_fmt(e.std, e.decimals)}"
    if e.delta is not None:
        text += f" ({_fmt(e.delta, e.decimals, sign=True)})"
    if e.n:
        text += f" [n={e.n}]"
    return text


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown (a heading, the table and a one-line legend)."""
    head = ["operator", "n", *table.headers]
    lines = [
        f"### {table.title}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * len(head)) + "|",
    ]
    for label, seeds, entries in table.rows:
        cells = [label, str(seeds), *(_entry_text(e, ("**", "**"), "±") for e in entries)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _legend(table), ""]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    text = re.sub(r"([&%$#_{}])", r"\\\1", text).replace("~", r"\textasciitilde{}")
    return text.replace("±", r"$\pm$").replace(MISSING, "--")


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` with ``booktabs`` rules."""
    head = ["operator", "n", *table.headers]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + _latex_escape(table.title) + r". " + _latex_escape(_legend(table)) + "}",
        r"\label{tab:" + table.stem + "}",
        r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in head) + r" \\",
        r"\midrule",
    ]
    for label, seeds, entries in table.rows:
        cells = [_latex_escape(label), str(seeds)]
        cells += [_entry_text(e, (r"\textbf{", "}"), r"$\pm$").replace(MISSING, "--") for e in entries]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _legend(table: Table) -> str:
    ref = f"; (±x): difference to {table.reference}" if table.reference else "; no bilinear row, so no deltas"
    return f"Mean ± std over n seeds{ref}; best per column in bold; {MISSING}: not measured."


def _slug(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")


def train_tables(train: pd.DataFrame) -> list[Table]:
    """One table per (architecture, protocol, preset, dataset, scale) of aggregated train rows."""
    tables = []
    for key, group in train.groupby(list(TRAIN_GROUP), sort=True, dropna=False):
        arch, protocol, preset, dataset, scale = key
        title = f"{arch} / {protocol} / x{scale} ({preset}, {dataset})"
        stem = "-".join(_slug(v) for v in ("train", arch, protocol, f"x{scale}", preset, dataset))
        tables.append(build_table(group, TRAIN_COLUMNS, title, stem))
    return tables


def ops_tables(ops: pd.DataFrame) -> list[Table]:
    """One table per (scale, input size, dtype, device) of aggregated ops rows."""
    tables = []
    for key, group in ops.groupby(list(OPS_GROUP), sort=True, dropna=False):
        scale, b, c, h, w, g, dtype, device = key
        b, c, h, w, g = (int(v) for v in (b, c, h, w, g))
        size = f"{b}x{c}x{h}x{w}, guide {g}"
        title = f"ops x{scale}, input {size} ({dtype}, {device})"
        stem = "-".join(_slug(v) for v in ("ops", f"x{scale}", f"{b}x{c}x{h}x{w}g{g}", dtype, device))
        tables.append(build_table(group, OPS_COLUMNS, title, stem))
    return tables
