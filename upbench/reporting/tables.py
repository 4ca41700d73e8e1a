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
printed precision. Which columns: :func:`select_columns`. Only this module rounds: stored values
are never rounded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

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


def _fmt(value: float, decimals: int, sign: bool = False) -> str:
    value = _round(value, decimals) + 0.0  # no "-0.00"
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def _entry_text(e: Entry, bold: tuple[str, str], pm: str) -> str:
    """A value cell: mean (bold in the tie group), ``[q1–q3]`` where known, ``± std`` over seeds."""
    if e.mean is None:
        return MISSING
    mean = _fmt(e.mean, e.decimals if e.spread is None else _spread_decimals(e.spread[1], e.decimals))
    text = f"{bold[0]}{mean}{bold[1]}" if e.best else mean
    if e.spread is not None:
        low, high = (_fmt(v, _spread_decimals(e.spread[1], e.decimals)) for v in e.spread)
        text += f" [{low}–{high}]"
    elif e.std is not None:
        text += f"{pm}{_fmt(e.std, e.decimals)}"
    if e.n:
        text += f" [n={e.n}]"
    return text


def _spread_decimals(value: float, decimals: int) -> int:
    """Fewer decimals for large quartiles (about 4 significant digits), so that cells stay short."""
    magnitude = int(math.floor(math.log10(abs(value)))) + 1 if value and math.isfinite(value) else 1
    return max(0, min(decimals, 4 - magnitude))


def interval_text(d: float, lo: float, hi: float, marked: bool, decimals: int) -> str:
    """``+d [lo, hi]`` with ``*`` when the interval excludes 0."""
    parts = (_fmt(v, decimals, sign=True) for v in (d, lo, hi))
    return "{} [{}, {}]".format(*parts) + ("*" if marked else "")


def differences(table: Table, reference: str) -> list[tuple[str, tuple[str, ...]]]:
    """Rows ``(label, cells)`` of the difference table of ``table`` against ``reference``
    (:data:`REFERENCE` or :data:`CONTROL`): the accuracy columns with intervals; empty when the
    table has no intervals or no row has a difference to that reference."""
    accuracy = accuracy_metrics()
    cols = [i for i, c in enumerate(table.columns) if c.metric in accuracy]
    if not table.intervals or not cols:
        return []
    out = []
    for label, _, entries in table.rows:
        if label == reference:
            continue
        cells = []
        for i in cols:
            e = entries[i]
            if reference == CONTROL:
                value = e.control
            else:
                value = (e.delta, *e.ci, e.marked) if e.delta is not None and e.ci is not None else None
            cells.append(MISSING if value is None else interval_text(*value, e.decimals + DIFF_EXTRA_DECIMALS))
        if any(c != MISSING for c in cells):
            out.append((label, tuple(cells)))
    return out


def _diff_headers(table: Table) -> list[str]:
    accuracy = accuracy_metrics()
    return [c.metric for c in table.columns if c.metric in accuracy]


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown: a heading, the values (mean ± std), a short legend and the
    caption notes, then one difference table per reference (bilinear, the guide control)."""
    head = ["operator", "n", *table.headers]
    lines = [
        f"### {table.title}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 2 + ["--:"] * len(table.headers)) + "|",
    ]
    for label, seeds, entries in table.rows:
        cells = [label, str(seeds), *(_entry_text(e, ("**", "**"), "±") for e in entries)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _legend(table), *(f"{note}" for note in table.notes), ""]
    for ref in (REFERENCE, CONTROL):
        rows = differences(table, ref)
        if not rows:
            continue
        diff_head = ["operator", *(f"Δ {h}" for h in _diff_headers(table))]
        lines += [
            f"Difference to {ref} (points, 95 % interval){' — guided operators' if ref == CONTROL else ''}:",
            "",
            "| " + " | ".join(diff_head) + " |",
            "|---|" + "--:|" * (len(diff_head) - 1),
            *("| " + " | ".join([label, *cells]) + " |" for label, cells in rows),
            "",
        ]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    text = re.sub(r"([&%$#_{}])", r"\\\1", text).replace("~", r"\textasciitilde{}")
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("–", "--").replace(MISSING, "--")


def _latex_tabular(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in head) + r" \\",
        r"\midrule",
        *(" & ".join(cells) + r" \\" for cells in rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]


def to_latex(table: Table, reference: str | None = None) -> str:
    """The table as a LaTeX ``table`` with ``booktabs`` rules and a short caption (the longer
    notes follow as ``%`` comments); ``reference`` (bilinear or the control): its difference
    table instead (empty string when there is none)."""
    star = r"$^*$"
    if reference is not None:
        rows = differences(table, reference)
        if not rows:
            return ""
        head = ["operator", *(f"Δ {h}" for h in _diff_headers(table))]
        body = [[_latex_escape(label), *(_latex_escape(c).replace("*", star) for c in cells)] for label, cells in rows]
        caption = _latex_escape(
            f"{table.title}: difference to {reference} in points, paired by seed, with its 95 % paired-bootstrap "
            "interval over validation images and seeds; STAR: the interval excludes 0."
        ).replace("STAR", star)
        label, comments = f"{table.stem}-vs-{reference}", ()
    else:
        head = ["operator", "n", *table.headers]
        body = [
            [
                _latex_escape(label),
                str(seeds),
                *(_latex_escape(_entry_text(e, ("BOLDOPEN", "BOLDCLOSE"), "±")) for e in entries),
            ]
            for label, seeds, entries in table.rows
        ]
        body = [[c.replace("BOLDOPEN", r"\textbf{").replace("BOLDCLOSE", "}") for c in row] for row in body]
        caption = _latex_escape(f"{table.title}. {_short_legend(table)}")
        label, comments = table.stem, table.notes
    return "\n".join(
        [
            r"% needs \usepackage{booktabs}",
            r"\begin{table}[t]",
            r"\centering",
            r"\caption{" + caption + "}",
            r"\label{tab:" + label + "}",
            *_latex_tabular(head, body),
            r"\end{table}",
            *(f"% {note}" for note in comments),
            "",
        ]
    )


def _short_legend(table: Table) -> str:
    tie = (
        "bold: the best mean and every value not significantly worse (95 % paired bootstrap)"
        if table.intervals
        else "bold: the best value"
    )
    spread = "; latency and memory: median [q1–q3]" if any(c.metric in SPREAD_METRICS for c in table.columns) else ""
    return f"Mean ± std over n seeds; {tie}{spread}."


def _legend(table: Table) -> str:
    if not table.intervals:
        why = "" if table.reference else "; no bilinear row"
        return (
            f"Mean ± std over n seeds; best per column in bold (no per-image records, so no intervals{why}); "
            f"latency and memory: median [q1–q3]; {MISSING}: not measured."
        )
    return (
        "Mean ± std over n seeds. Bold: the tie group, the best mean and every value not significantly "
        "worse (95 % paired bootstrap; latency and memory: median [q1–q3], tied while the IQRs overlap). "
        f"{MISSING}: not measured. Differences with intervals follow the table."
    )


def _slug(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")


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
