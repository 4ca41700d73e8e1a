"""Comparison tables (Markdown and LaTeX) from seed-aggregated results.

One table per group (architecture, protocol, preset, dataset, scale and the full resolved
setting for train results; scale and input size for ops results); one row per operator label,
one column per metric. A value cell is compact: the mean over seeds and ``± std`` when there
are several seeds (and the std is not 0), ``median [q1–q3]`` for latency and peak memory, and
``[n=k]`` when that metric has a different number of seeds than the row.

With an ``analysis`` (:class:`upbench.reporting.compare.RunBootstrap`, from the per-image
records) bold marks the tie group (the best mean and every value not significantly worse than
it), and the differences go to their own tables, one per reference: each operator minus
``bilinear``, and each guided operator minus the ``guided_bilinear`` control, with the 95 %
paired-bootstrap interval and ``*`` when it excludes 0 (:func:`differences`). Latency and peak
memory ties come from overlapping interquartile ranges; other columns bold the best value at the
printed precision. Which columns: :func:`select_columns`. Only the table modules round: stored
values are never rounded.

Three modules, one job each: :mod:`~upbench.reporting.table_model` (columns, cells, tables),
this one (building them from results), :mod:`~upbench.reporting.table_text` (Markdown, LaTeX);
every name of the other two is also here, as ``tables.<name>``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from upbench.reporting.table_model import (
    CONTROL,
    COST_COLUMNS,
    DEFAULT_COST_COLUMNS,
    DIFF_EXTRA_DECIMALS,
    MISSING,
    OPS_COLUMNS,
    OPS_GROUP,
    REFERENCE,
    SPREAD_METRICS,
    TRAIN_GROUP,
    Column,
    Entry,
    Table,
    _round,
    accuracy_metrics,
    select_columns,
    train_columns,
)
from upbench.reporting.table_text import (
    _entry_text,
    _fmt,
    _legend,
    _spread_decimals,
    differences,
    interval_text,
    to_latex,
    to_markdown,
)

#: What this module offers: the tables (built here), their columns (:mod:`.table_model`) and
#: their text (:mod:`.table_text`), all under ``tables.<name>``.
__all__ = [
    "CONTROL",
    "COST_COLUMNS",
    "DEFAULT_COST_COLUMNS",
    "DIFF_EXTRA_DECIMALS",
    "MISSING",
    "OPS_COLUMNS",
    "OPS_GROUP",
    "REFERENCE",
    "SPREAD_METRICS",
    "TRAIN_GROUP",
    "Column",
    "Entry",
    "Table",
    "_entry_text",
    "_fmt",
    "_legend",
    "_spread_decimals",
    "accuracy_metrics",
    "build_table",
    "differences",
    "interval_text",
    "ops_tables",
    "select_columns",
    "to_latex",
    "to_markdown",
    "train_columns",
    "train_tables",
]


def build_table(
    summary: pd.DataFrame,
    columns: tuple[Column, ...],
    title: str,
    stem: str,
    *,
    analysis: Any = None,
    setting_id: str | None = None,
) -> Table:
    """A :class:`Table` of one group's aggregated rows (columns ``label, metric, mean, std, n``;
    optional ``operator``, ``q1``, ``q3``); ``analysis`` and ``setting_id`` add intervals and
    tie groups (see the module docstring)."""
    present = set(summary["metric"])
    columns = tuple(c for c in columns if not c.optional or c.metric in present)
    labels = sorted(set(summary["label"]), key=lambda lab: (lab != REFERENCE, lab))
    stats = {(r.label, r.metric): (r.mean, r.std, int(r.n)) for r in summary.itertuples()}
    quartiles = _quartiles(summary)
    guided = _guided_labels(summary)
    reference = REFERENCE if REFERENCE in labels else None
    intervals = analysis is not None and setting_id is not None and _has_records(analysis, setting_id)
    best: dict[str, set[str]] = {}
    for col in columns:
        measured = [lab for lab in labels if (lab, col.metric) in stats]
        if intervals and col.metric in accuracy_metrics():
            best[col.metric] = analysis.tie_group(setting_id, col.metric) & set(measured)
        elif col.metric in SPREAD_METRICS and measured and all((lab, col.metric) in quartiles for lab in measured):
            top = min(measured, key=lambda lab: stats[(lab, col.metric)][0])
            best[col.metric] = {
                lab for lab in measured if _overlap(quartiles[(lab, col.metric)], quartiles[(top, col.metric)])
            }
        elif measured:
            shown = {lab: _round(stats[(lab, col.metric)][0] * col.factor, col.decimals) for lab in measured}
            target = max(shown.values()) if col.higher_is_better else min(shown.values())
            best[col.metric] = {lab for lab, v in shown.items() if v == target}
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
            is_best = len(labels) > 1 and lab in best.get(col.metric, set())
            extra: dict[str, Any] = {}
            if intervals and col.metric in accuracy_metrics():
                extra = _accuracy_extra(analysis, setting_id, lab, col, ref is not None, lab in guided, labels)
                if "delta" in extra:
                    delta = extra.pop("delta")
            elif col.metric in SPREAD_METRICS and (lab, col.metric) in quartiles:
                q1, q3 = quartiles[(lab, col.metric)]
                extra["spread"] = (q1 * col.factor, q3 * col.factor)
                if ref is not None and (reference, col.metric) in quartiles:
                    extra["marked"] = not _overlap(quartiles[(lab, col.metric)], quartiles[(reference, col.metric)])
            entries.append(Entry(mean, std, n if n != seeds else 0, delta, is_best, col.decimals, **extra))
        rows.append((lab, seeds, tuple(entries)))
    return Table(title, stem, columns, tuple(rows), reference, intervals=intervals)


def _quartiles(summary: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    if not {"q1", "q3"} <= set(summary.columns):
        return {}
    ok = summary.dropna(subset=["q1", "q3"])
    return {(r.label, r.metric): (float(r.q1), float(r.q3)) for r in ok.itertuples()}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _guided_labels(summary: pd.DataFrame) -> set[str]:
    """Labels whose operator is guided (needs the registry; none if the column is absent)."""
    if "operator" not in summary:
        return set()
    from upbench.errors import UnknownOperatorError
    from upbench.registry import operator_info

    out = set()
    for label, op in summary[["label", "operator"]].drop_duplicates().itertuples(index=False):
        try:
            if operator_info(str(op)).guided:
                out.add(str(label))
        except UnknownOperatorError:
            continue
    return out


def _has_records(analysis: Any, setting_id: str) -> bool:
    return any(analysis.seeds(setting_id, lab) for lab in analysis.labels(setting_id))


def _accuracy_extra(
    analysis: Any, sid: str, label: str, col: Column, has_ref: bool, guided: bool, labels: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    f = col.factor
    if has_ref:
        d = analysis.difference(sid, label, REFERENCE, col.metric)
        if d.n_paired:
            out.update(delta=d.diff * f, ci=(d.ci_low * f, d.ci_high * f), marked=d.significant)
    if guided and label != CONTROL and CONTROL in labels:
        c = analysis.difference(sid, label, CONTROL, col.metric)
        if c.n_paired:
            out["control"] = (c.diff * f, c.ci_low * f, c.ci_high * f, c.significant)
    return out


def _slug(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")


def train_tables(train: pd.DataFrame, analysis: Any = None, columns: tuple[Column, ...] | None = None) -> list[Table]:
    """One table per train setting: (architecture, protocol, preset, dataset, scale) and, when
    ``train`` has a ``setting_id`` column, the rest of the resolved configuration; ``analysis``
    (a :class:`~upbench.reporting.compare.RunBootstrap`) adds intervals, tie groups and notes;
    ``columns`` (default :func:`select_columns`) picks what is shown."""
    columns = select_columns() if columns is None else columns
    keys = [*TRAIN_GROUP, *(["setting_id"] if "setting_id" in train else [])]
    groups = list(train.groupby(keys, sort=True, dropna=False))
    titles: dict[tuple, list[str]] = {}
    for key, _ in groups:
        titles.setdefault(tuple(key[:5]), []).append(key[5] if len(key) > 5 else None)
    tables = []
    for key, group in groups:
        arch, protocol, preset, dataset, scale = key[:5]
        sid = key[5] if len(key) > 5 else None
        title = f"{arch} / {protocol} / x{scale} ({preset}, {dataset})"
        stem = "-".join(_slug(v) for v in ("train", arch, protocol, f"x{scale}", preset, dataset))
        siblings = titles[tuple(key[:5])]
        if len(siblings) > 1:  # settings that differ beyond the title: name the difference
            title += " [" + ", ".join(_differences(analysis, siblings, sid)) + "]"
            stem += f"-{sid}"
        table = build_table(group, columns, title, stem, analysis=analysis, setting_id=sid)
        tables.append(_with_notes(table, group, analysis, sid))
    return tables


def _differences(analysis: Any, siblings: list[str | None], sid: str | None) -> list[str]:
    from upbench.reporting.settings import distinguishing_keys

    settings = getattr(analysis, "settings", {}) if analysis is not None else {}
    if sid is None or any(s not in settings for s in siblings):
        return [f"setting {sid}"]
    return distinguishing_keys([settings[s] for s in siblings])[siblings.index(sid)] or [f"setting {sid}"]


def _with_notes(table: Table, group: pd.DataFrame, analysis: Any, sid: str | None) -> Table:
    """Caption notes: the BF tolerance, which operators can pass the guide through, seed agreement."""
    import dataclasses

    notes = []
    through: list[str] = []
    weighting: list[str] = []
    tol = group.loc[group["metric"] == "BF_tolerance_px", "mean"]
    if not tol.empty:
        values = sorted({round(float(v), 2) for v in tol})
        shown = " / ".join(f"{v:.2f}" for v in values)
        notes.append(f"BF tolerance: {shown} px (0.75 % of the image diagonal, at least 1 px).")
    if "operator" in group:
        from upbench.errors import UnknownOperatorError
        from upbench.registry import operator_info

        for label, op in group[["label", "operator"]].drop_duplicates().itertuples(index=False):
            try:
                info = operator_info(str(op))
            except UnknownOperatorError:
                continue
            if info.guided:
                (through if info.guide_passthrough else weighting).append(str(label))
        if through or weighting:
            notes.append(
                "Guide passthrough (output can carry guide content directly): "
                f"{', '.join(sorted(through)) or 'none'}; guided, only weighting LR features: "
                f"{', '.join(sorted(weighting)) or 'none'}."
            )
            if CONTROL not in set(group["label"]):
                notes.append(f"No {CONTROL} control in this setting: guided gains are not separated from the guide.")
    if analysis is not None and sid is not None:
        taus = []
        for metric in ("mIoU", "BF"):
            tau, pairs = analysis.seed_agreement(sid, metric)
            if pairs:
                taus.append(f"{metric} {tau:+.2f}")
        if taus:
            what = "Seed agreement (Kendall tau between the seeds' operator rankings, mean over seed pairs)"
            notes.append(f"{what}: {', '.join(taus)}.")
        notes += _unseparated_notes(analysis, sid, sorted(set(group["label"])), sorted([*through, *weighting]))
    return dataclasses.replace(table, notes=tuple(notes))


def _unseparated_notes(analysis: Any, sid: str, labels: list[str], guided: list[str]) -> list[str]:
    """What the run cannot tell apart: per reference and metric, the labels whose 95 % interval
    against it includes 0 (the control is compared with the guided operators only)."""
    notes = []
    for ref, who in ((REFERENCE, labels), (CONTROL, guided)):
        parts = []
        for metric in accuracy_metrics():
            same = []
            for label in who:
                if label == ref:
                    continue
                d = analysis.difference(sid, label, ref, metric)
                if d.n_paired and not d.significant:
                    same.append(str(label))
            if same:
                parts.append(f"{metric}: {', '.join(same)}")
        if parts and ref in labels:
            notes.append(f"Not separated from {ref} (95 % interval includes 0): {'; '.join(parts)}.")
    return notes


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
