"""The comparison tables as text: Markdown and LaTeX (``booktabs``), with their legends and the
difference tables (each operator minus ``bilinear``, each guided operator minus the
``guided_bilinear`` control, with 95 % paired-bootstrap intervals). Only this module and
:mod:`upbench.reporting.tables` round: stored values are never rounded.
"""

from __future__ import annotations

import math
import re

from upbench.reporting.table_model import (
    CONTROL,
    DIFF_EXTRA_DECIMALS,
    MISSING,
    REFERENCE,
    SPREAD_METRICS,
    Entry,
    Table,
    _round,
    accuracy_metrics,
)


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
