"""``report.html``: the report as one self-contained page (inline CSS and script, figures embedded
as data URIs; nothing is fetched, so it opens offline and can be mailed or attached to a paper).

What the page adds to report.md: every train table with *all* metrics, sortable by a click on a
column header (numbers sort best-first), compact cells (mean, std in small type; the tie group
highlighted), the full numbers on hover (title), and a column of small interval plots: for the
metric and reference chosen in the table's selectors, each operator's difference with its 95 %
interval against a zero line (dark where the interval excludes 0). The figures carry their
captions; the qualitative panels are collapsible; the audit of the dataset renders from a tidy
table when the report was given one. The script is the hand-written ``assets/report.js``; without
it the page still shows every table and figure.
"""

from __future__ import annotations

import base64
import html
import re
from importlib import resources
from pathlib import Path

import pandas as pd

from upbench.reporting import tables

ASSETS = "upbench.reporting"
FOREST_WIDTH = 120
FOREST_HEIGHT = 14


def _asset(name: str) -> str:
    return resources.files(ASSETS).joinpath("assets", name).read_text(encoding="utf-8")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _inline(text: str) -> str:
    """Escape, then the inline Markdown the report uses: `code` and **bold**."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def markdown_to_html(lines: list[str]) -> str:
    """The Markdown subset report.md is written in: headings, lists, pipe tables, paragraphs.
    ``lines`` may hold several lines in one string (a section written as one block)."""
    lines = "\n".join(lines).split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,4}) (.*)$", line):
            level = len(m.group(1))
            out.append(f'<h{level} id="{_slug(m.group(2))}">{_inline(m.group(2))}</h{level}>')
            i += 1
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-:") for c in r)]
            th = "".join(f"<th>{_inline(c)}</th>" for c in head)
            trs = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append(f'<table class="md-table"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>')
        else:
            para = [lines[i]]  # a line no other branch took starts a paragraph (always progress)
            i += 1
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,4} |- |\|)", lines[i]):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def _num(value: float | None) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.10g}"


def _forest_svg(d: float, lo: float, hi: float, marked: bool, span: tuple[float, float]) -> str:
    """A one-row interval plot: zero line, the interval as a bar, the difference as a dot."""
    a, b = span
    pad = 6

    def x(v: float) -> float:
        return pad + (v - a) / (b - a) * (FOREST_WIDTH - 2 * pad) if b > a else FOREST_WIDTH / 2

    colour = "#1f3f77" if marked else "#9a9a9a"
    mid = FOREST_HEIGHT / 2
    return (
        f'<svg width="{FOREST_WIDTH}" height="{FOREST_HEIGHT}" role="img" aria-label="{d:+.2f} [{lo:+.2f}, {hi:+.2f}]">'
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="0" y2="{FOREST_HEIGHT}" stroke="#c33" stroke-width="1"/>'
        f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{mid}" y2="{mid}" stroke="{colour}" stroke-width="2"/>'
        f'<circle cx="{x(d):.1f}" cy="{mid}" r="3" fill="{colour}"/></svg>'
    )


def _differences(table: tables.Table, col: int, reference: str) -> dict[str, tuple[float, float, float, bool]]:
    out = {}
    for label, _, entries in table.rows:
        e = entries[col]
        if reference == tables.CONTROL:
            value = e.control
        else:
            value = (e.delta, *e.ci, e.marked) if e.delta is not None and e.ci is not None else None
        if value is not None and label != reference:
            out[label] = value
    return out


def table_html(table: tables.Table) -> str:
    """One interactive table (see the module); its ``<section>`` carries the selectors."""
    accuracy = tables.accuracy_metrics()
    acc = [i for i, c in enumerate(table.columns) if c.metric in accuracy]
    refs = [r for r in (tables.REFERENCE, tables.CONTROL) if any(_differences(table, i, r) for i in acc)]
    forest = table.intervals and bool(refs)
    diffs = {(table.columns[i].metric, r): _differences(table, i, r) for i in acc for r in refs} if forest else {}
    spans = {}
    for key, values in diffs.items():
        ends = [v for d in values.values() for v in d[1:3]] + [0.0]
        spans[key] = (min(ends), max(ends))
    parts = [f'<section class="setting" id="t-{html.escape(table.stem)}">', f"<h3>{_inline(table.title)}</h3>"]
    if forest:
        metric_opts = "".join(
            f'<option value="{table.columns[i].metric}">{table.columns[i].metric}</option>' for i in acc
        )
        ref_opts = "".join(
            f'<option value="{r}">{r}{" (guided operators)" if r == tables.CONTROL else ""}</option>' for r in refs
        )
        parts.append(
            f'<div class="controls"><label>metric <select class="metric">{metric_opts}</select></label>'
            f'<label>difference to <select class="ref">{ref_opts}</select></label></div>'
        )
    head = ['<th data-sort="text">operator</th>', "<th>n</th>"]
    after = max(acc) if forest else -1  # the interval plots follow the accuracy columns
    for i, c in enumerate(table.columns):
        better = "higher" if c.higher_is_better else "lower"
        head.append(f'<th data-metric="{c.metric}" title="{better} is better">{html.escape(c.header)}</th>')
        if i == after:
            tip = "95 % paired-bootstrap interval; dark: it excludes 0"
            head.append(f'<th class="forest-head" title="{tip}">difference (95 % interval)</th>')
    body = []
    decimals = {c.metric: c.decimals for c in table.columns}
    for label, seeds, entries in table.rows:
        cells = [f'<td data-v="{html.escape(label)}">{html.escape(label)}</td>', f'<td data-v="{seeds}">{seeds}</td>']
        value_cells = [_value_cell(c, e, label, table) for c, e in zip(table.columns, entries)]
        cells += value_cells[: after + 1]
        if forest:
            attrs, svgs = [], []
            for (metric, ref), values in diffs.items():
                if label not in values:
                    continue
                d, lo, hi, marked = values[label]
                attrs.append(f'data-v-{metric}-{ref}="{_num(d)}"')
                digits = decimals[metric] + tables.DIFF_EXTRA_DECIMALS
                text = tables.interval_text(d, lo, hi, marked, digits)
                svgs.append(
                    f'<span data-fm="{metric}" data-fr="{ref}">{_forest_svg(d, lo, hi, marked, spans[(metric, ref)])}'
                    f'<span class="ftext">{html.escape(text)}</span></span>'
                )
            cells.append(f'<td class="forest" data-v="" {" ".join(attrs)}>{"".join(svgs)}</td>')
        cells += value_cells[after + 1 :]
        body.append(f'<tr data-label="{html.escape(label)}">' + "".join(cells) + "</tr>")
    parts.append(
        '<div class="scroll"><table class="results sortable"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"
        + "\n".join(body) + "</tbody></table></div>"
    )  # fmt: skip
    notes = [tables._legend(table), *table.notes]
    parts.append('<div class="notes">' + "".join(f"<p>{_inline(n)}</p>" for n in notes) + "</div>")
    parts.append("</section>")
    return "\n".join(parts)


def _value_cell(col: tables.Column, e: tables.Entry, label: str, table: tables.Table) -> str:
    if e.mean is None:
        return f'<td data-v="" data-metric="{col.metric}">{tables.MISSING}</td>'
    digits = e.decimals if e.spread is None else tables._spread_decimals(e.spread[1], e.decimals)
    mean = tables._fmt(e.mean, digits)
    extra = ""
    tip = [f"{col.header}: {mean}"]
    if e.spread is not None:
        iqr = f"[{tables._fmt(e.spread[0], digits)}–{tables._fmt(e.spread[1], digits)}]"
        tip.append(f"median, interquartile range {iqr}")
    elif e.std is not None:
        sd = tables._fmt(e.std, e.decimals)
        extra = f' <span class="sd">± {sd}</span>'
        tip.append(f"± {sd} std over seeds")
    if e.n:
        extra += f' <span class="sd">[n={e.n}]</span>'
    if e.delta is not None and e.ci is not None and label != table.reference:
        diff = tables.interval_text(e.delta, *e.ci, e.marked, e.decimals + tables.DIFF_EXTRA_DECIMALS)
        tip.append(f"vs {tables.REFERENCE}: {diff}")
    if e.control is not None:
        tip.append(f"vs {tables.CONTROL}: {tables.interval_text(*e.control, e.decimals + tables.DIFF_EXTRA_DECIMALS)}")
    cls = ' class="best"' if e.best else ""
    title = html.escape("; ".join(tip), quote=True)
    return f'<td{cls} data-v="{_num(e.mean)}" data-metric="{col.metric}" title="{title}">{mean}{extra}</td>'


def audit_html(frame: pd.DataFrame | None) -> str:
    """The audit of the dataset as a sortable table, or a line saying there is none."""
    head = '<h2 id="audit-of-the-dataset">Audit of the dataset</h2>'
    if frame is None or frame.empty:
        return head + '<p class="no-audit">No audit of the dataset in this report.</p>'
    cols = list(frame.columns)
    th = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    rows = []
    for r in frame.itertuples(index=False):
        cells = []
        for v in r:
            if isinstance(v, float | int) and not isinstance(v, bool):
                shown = tables.MISSING if pd.isna(v) else f"{v:.4g}"
                cells.append(f'<td data-v="{_num(float(v))}">{shown}</td>')
            else:
                cells.append(f'<td data-v="{html.escape(str(v))}">{html.escape(str(v))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'{head}<table class="audit sortable"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _figure_html(out: Path, name: str, caption: str, number: int) -> str:
    path = out / "figures" / f"{name}.png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure id="f-{html.escape(name)}"><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
        f"<figcaption><b>Figure {number}.</b> {_inline(caption)}</figcaption></figure>"
    )


def render_html(blocks: list, title: str, out: Path) -> str:
    """The page of the report blocks (:class:`upbench.reporting.report.Block`), figures read from
    ``out/figures``."""
    body: list[str] = []
    number = 0
    first = True
    for b in blocks:
        if b.kind == "md":
            if first:  # the title and the provenance list
                heading = [li for li in b.lines if li.startswith("# ")]
                items = [li for li in b.lines if li.startswith("- ")]
                body.append(
                    '<header class="provenance">' + markdown_to_html(heading) + markdown_to_html(items) + "</header>"
                )
                body.append("<!--toc-->")
                first = False
            else:
                body.append(markdown_to_html(b.lines))
        elif b.kind == "table":
            body.append(table_html(b.full or b.table))
        elif b.kind == "figure":
            number += 1
            fig = _figure_html(out, b.name, b.caption, number)
            if b.lines == ["qualitative"]:
                summary = f"Qualitative panel {html.escape(b.name)} (click to open)"
                fig = f"<details><summary>{summary}</summary>{fig}</details>"
            body.append(fig)
        elif b.kind == "audit":
            body.append(audit_html(b.frame))
    page = "\n".join(body)
    headings = re.findall(r'<h2 id="([^"]+)">(.*?)</h2>', page)
    toc = '<nav class="toc">' + "".join(f'<a href="#{i}">{t}</a>' for i, t in headings) + "</nav>"
    page = page.replace("<!--toc-->", toc, 1)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_asset('report.css')}</style>\n</head>\n<body>\n"
        f"{page}\n<script>\n{_asset('report.js')}</script>\n</body>\n</html>\n"
    )
