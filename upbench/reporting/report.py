"""``write_report``: tables, figures, learning curves, qualitative panels and the HTML page of a run.

Layout of the output folder (default ``<run dir>/report/``, inside the run folder so that running
the main job never touches tracked files; the committed examples are ``reports/<suite>/``)::

    report.md                  every table, the figures with captions, skipped figures, failed cells,
                               the suite's cells without results
    report.html                the same as one self-contained page (:mod:`upbench.reporting.html`):
                               sortable tables with a metric selector and interval plots, figures
                               embedded, qualitative panels collapsible; opens offline
    tables/<group>.md, .tex    one table per train group (mean ± std; the differences with their
                               intervals in their own tables) and per ops setting
    tables/<group>-vs-<ref>.tex  the differences to bilinear and to the guide control, for a paper
    tables/train_summary.csv   the seed-aggregated rows behind the tables (also ops_summary.csv)
    tables/compare_<ref>.csv   :func:`upbench.reporting.compare` against bilinear and guided_bilinear
    tables/ratio_trend_<ref>.csv  each gap at every ratio and its change (:mod:`upbench.reporting.ratio`)
    tables/variants.csv        each variant against its operator (:mod:`upbench.reporting.variants`)
    tables/learning_curves.csv the loss per logged step, smoothed, mean and min–max over seeds
    figures/<name>.png, .svg   accuracy vs GMACs, BF vs ratio, cost figures, learning curves, panels
    run/                       the run's results, so that the report folder can be re-analysed
                               (``upbench report``, ``upbench compare``, the notebooks; see
                               :mod:`upbench.reporting.bundle`)

``RUN_DIR`` may itself be such a report folder (its ``run/`` is read). Everything is sorted and
formatted deterministically and carries no timestamp of its own (only the rows' write times, in the
header), so re-running the report on the same results rewrites byte-identical files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from upbench.reporting import figures, qualitative, tables
from upbench.reporting.bundle import RUN_SUBDIR, ship_run
from upbench.reporting.compare import RunBootstrap
from upbench.reporting.completeness import unfinished_cells
from upbench.reporting.curves import curve_bands, learning_figures, load_curves
from upbench.reporting.data_section import data_section
from upbench.reporting.learning import learning_section
from upbench.reporting.load import check_run_dir, failures, suite_name, summarise
from upbench.reporting.published import published_section
from upbench.reporting.ratio import ratio_markdown, ratio_trend
from upbench.reporting.settings import attach_setting_ids
from upbench.reporting.variants import variant_analysis, variant_markdown, variant_table
from upbench.results import read_environment

log = logging.getLogger("upbench.reporting")
REPORT_SUBDIR = "report"
PROVENANCE = ("git_commit", "upbench_version", "torch_version", "device", "device_name", "hostname", "threads")
HOW_TO_READ = (
    "How to read the tables: each row is an operator; each value is the mean over seeds ± the std over "
    "seeds (latency and memory: median [q1–q3] of the timed calls). Bold marks a tie group: the best "
    "value and every value not significantly worse than it, never a lone winner inside the noise. Below "
    "each table, the differences to `bilinear` and, for guided operators, to the guide control "
    "`guided_bilinear` (bilinear plus a learned 1x1 projection of the guide: what an operator gains "
    "beyond letting the guide reach the output), in points with the 95 % interval of a paired bootstrap "
    "over the validation images and seeds; * marks an interval that excludes 0, without * the data "
    "cannot tell the two apart. op. params include the image stem a guided operator adds in the plain "
    "model; GMACs, latency and memory are the whole model's."
)


@dataclass
class Block:
    """One piece of the report, rendered to Markdown and to HTML: ``md`` (Markdown lines),
    ``table`` (a train or ops table; ``full`` holds it with every column for the HTML page),
    ``figure`` (``name``, ``caption``, ``kind`` = figure, learning or qualitative) or ``audit``."""

    kind: str
    lines: list[str] = field(default_factory=list)
    table: tables.Table | None = None
    full: tables.Table | None = None
    name: str = ""
    caption: str = ""
    frame: pd.DataFrame | None = None


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    n_images: int = 3,
    device: str = "cpu",
    metrics: Any = None,
    columns: Any = None,
    audit: pd.DataFrame | None = None,
    compute_audit: bool = False,
) -> Path:
    """Write the report of ``run_dir`` (a run folder, or a report folder that ships its run) into
    ``out_dir`` (default ``run_dir/report``; for a report folder ``runs/<suite>-report``); returns
    the folder.

    Args:
        n_images: validation images per qualitative panel.
        device: where the saved models run for the qualitative panels.
        metrics: accuracy metrics of the Markdown and LaTeX tables (list or comma string; default
            mIoU, BF, BIoU); the HTML page always has every metric.
        columns: the other columns of those tables (default operator params, GMACs, latency).
        audit: a tidy audit of the dataset (e.g. columns ``check, ratio, class, metric, value``),
            shown in its own section of the page; without it that section is left out (the "Data
            and encoder" section names the audit and its command).
        compute_audit: compute the audit of the run's dataset if it is not cached (else the report
            names the command that computes it).
    """
    given = Path(run_dir)
    run_dir = check_run_dir(given)
    suite = suite_name(run_dir)
    if out_dir is not None:
        out = Path(out_dir)
    elif run_dir != given:  # a report folder: never write into (possibly tracked) report folders
        out = Path("runs") / f"{suite}-report"
    else:
        out = run_dir / REPORT_SUBDIR
    shown_columns = tables.select_columns(metrics, columns)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    data = summarise(run_dir)
    provenance = _provenance(run_dir, data["rows"])
    blocks: list[Block] = [Block("md", [f"# upbench report: {suite}", "", *provenance, ""])]
    blocks.append(Block("md", data_section(run_dir, compute_audit=compute_audit)))
    analysis = RunBootstrap(run_dir) if not data["train"].empty else None
    trends: dict[str, pd.DataFrame] = {}
    if analysis is not None:
        data["train"] = _with_intervals(data["train"], analysis)
        for ref in (tables.REFERENCE, tables.CONTROL):
            frame = analysis.compare(ref)
            if frame["n_paired"].gt(0).any():
                _write(out / "tables" / f"compare_{ref}.csv", frame.to_csv(index=False, float_format="%.10g"))
            trends[ref] = ratio_trend(analysis, ref)
            if not trends[ref].empty:
                csv = trends[ref].to_csv(index=False, float_format="%.10g")
                _write(out / "tables" / f"ratio_trend_{ref}.csv", csv)

    every = tables.select_columns(tables.accuracy_metrics(), [c.metric for c in tables.COST_COLUMNS])
    train_tables = tables.train_tables(data["train"], analysis, shown_columns)
    full_tables = tables.train_tables(data["train"], analysis, every)
    ops_tables = tables.ops_tables(data["ops"])
    for table in train_tables + ops_tables:
        _write(out / "tables" / f"{table.stem}.md", tables.to_markdown(table))
        _write(out / "tables" / f"{table.stem}.tex", tables.to_latex(table))
        for ref in (tables.REFERENCE, tables.CONTROL):
            tex = tables.to_latex(table, ref)
            if tex:
                _write(out / "tables" / f"{table.stem}-vs-{ref}.tex", tex)
    for name in ("train", "ops"):
        if not data[name].empty:
            _write(out / "tables" / f"{name}_summary.csv", data[name].to_csv(index=False, float_format="%.10g"))
    if train_tables or ops_tables:
        intro = [HOW_TO_READ, ""] if any(t.intervals for t in train_tables) else []
        blocks.append(Block("md", ["## Tables", "", *intro]))
        blocks += [Block("table", table=t, full=f) for t, f in zip(train_tables, full_tables)]
        blocks += [Block("table", table=t, full=t) for t in ops_tables]
    else:
        blocks.append(Block("md", ["No results.", ""]))
    blocks.append(Block("md", ratio_markdown(trends)))
    variants = variant_analysis(run_dir, device) if analysis is not None else None
    if variants is not None:
        table = variant_table(variants)
        _write(out / "tables" / "variants.csv", table.to_csv(index=False, float_format="%.10g"))
        blocks.append(Block("md", variant_markdown(table, variants.metrics)))
    blocks.append(Block("md", published_section(suite, data["train"])))

    skipped: list[str] = []
    blocks += _learning_blocks(run_dir, data, out, skipped)
    figure_blocks: list[Block] = []
    for name, draw, source in (
        ("accuracy_vs_gmacs", figures.accuracy_vs_gmacs_figure, "train"),
        ("bf_vs_ratio", figures.bf_vs_ratio_figure, "train"),
        ("ops_costs", figures.ops_costs_figure, "ops"),
    ):
        cap = figures.caption(name, data["train"])
        _figure(out, name, lambda draw=draw, source=source: draw(data[source]), cap, figure_blocks, skipped)
    for name, metric in (("ops_sizes", None), ("ops_sizes_memory", "peak_memory")):
        draw = lambda metric=metric: figures.ops_size_figure(data["ops"], data["rows"], metric)  # noqa: E731
        _figure(out, name, draw, figures.caption(name), figure_blocks, skipped)
    if figure_blocks:
        blocks += [Block("md", ["## Figures", ""]), *figure_blocks]
    blocks += _qualitative(run_dir, data["rows"], out, n_images, device, skipped)
    if audit is not None:
        blocks.append(Block("audit", frame=audit))
    if skipped:
        blocks.append(Block("md", ["## Skipped figures", "", *(f"- {s}" for s in skipped), ""]))
    failed = failures(data["rows"])
    if not failed.empty:
        blocks.append(Block("md", ["## Failed cells", "", *(_failure_line(r) for r in failed.itertuples()), ""]))
    unfinished = unfinished_cells(run_dir, data["rows"])
    if unfinished:
        head = f"{len(unfinished)} cell(s) of the suite have no results in this report (or need a rerun):"
        blocks.append(Block("md", ["## Cells without results", "", head, "", *unfinished, ""]))
    shipped = ship_run(run_dir, out)
    blocks.append(Block("md", _files_section(shipped is not None or run_dir == out / RUN_SUBDIR)))

    _write(out / "report.md", _markdown(blocks))
    from upbench.reporting.html import render_html

    _write(out / "report.html", render_html(blocks, title=f"upbench report: {suite}", out=out))
    return out


def _learning_blocks(run_dir: Path, data: dict[str, pd.DataFrame], out: Path, skipped: list[str]) -> list[Block]:
    """The "Did every operator learn?" table and the learning-curve figures (one per setting)."""
    blocks = [Block("md", learning_section(data["train"]))]
    train_rows, _ = attach_setting_ids(data["rows"][data["rows"]["kind"] == "train"], run_dir)
    curves = load_curves(run_dir, train_rows)
    try:
        drawn = learning_figures(curves)
    except figures.FigureSkipped as reason:
        if not data["train"].empty:
            skipped.append(f"learning_curves: {reason}")
        return blocks
    bands = curve_bands(curves)
    _write(out / "tables" / "learning_curves.csv", bands.to_csv(index=False, float_format="%.10g"))
    heading = [] if blocks[0].lines else ["## Did every operator learn?", ""]
    blocks.append(Block("md", [*heading, "### Learning curves", ""]))
    for stem, _, fig in drawn:
        figures.save_figure(fig, out / "figures" / stem)
        blocks.append(Block("figure", name=stem, caption=figures.caption("learning_curves"), lines=["learning"]))
    return blocks


def _with_intervals(train: pd.DataFrame, analysis: RunBootstrap) -> pd.DataFrame:
    """``train`` with ``ci_low``/``ci_high``: the bootstrap interval of each accuracy mean (error bars)."""
    low, high = [], []
    for r in train.itertuples():
        d = None
        if r.metric in tables.accuracy_metrics() and isinstance(getattr(r, "setting_id", None), str):
            d = analysis.difference(r.setting_id, r.label, None, r.metric)
        low.append(d.ci_low if d is not None and d.n_paired else float("nan"))
        high.append(d.ci_high if d is not None and d.n_paired else float("nan"))
    return train.assign(ci_low=low, ci_high=high)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _figure(out: Path, name: str, draw, caption: str, blocks: list[Block], skipped: list[str]) -> None:  # noqa: ANN001
    try:
        fig = draw()
    except figures.FigureSkipped as reason:
        log.info("figure %s skipped: %s", name, reason)
        skipped.append(f"{name}: {reason}")
        return
    figures.save_figure(fig, out / "figures" / name)
    blocks.append(Block("figure", name=name, caption=caption))


def _qualitative(
    run_dir: Path, rows: pd.DataFrame, out: Path, n_images: int, device: str, skipped: list[str]
) -> list[Block]:
    """Draw the qualitative panels; return their blocks and the mosaic-index tables."""
    if qualitative.model_cells(run_dir, rows).empty:
        reason = "qualitative: no finished train cell saved a model.pt"
        log.info("figure %s", reason)
        skipped.append(reason)
        return []
    panels = qualitative.collect(run_dir, rows, n_images=n_images, device=device)
    blocks: list[Block] = [
        Block(
            "md",
            [
                "## Qualitative panels and mosaic index",
                "",
                "Mosaic index of the upsampled feature on the qualitative images, in [-1, 1] (1: piecewise "
                "constant on s x s blocks, 0: no block structure; s is the cell's ratio, 8 for the hierarchical "
                "head's c4 feature; see `upbench.reporting.mosaic`).",
                "",
            ],
        )
    ]
    for panel in panels:
        skipped += [f"{panel.stem}: {label}: {why}" for label, why in sorted(panel.problems.items())]
        if not panel.predictions:
            continue
        lines = [f"### {panel.title}", "", "| operator | mosaic index |", "|---|--:|"]
        lines += [f"| {label} | {_mosaic_text(panel.mosaic[label])} |" for label in sorted(panel.mosaic)]
        blocks.append(Block("md", [*lines, ""]))
        panel_blocks: list[Block] = []
        draw = lambda panel=panel: qualitative.qualitative_figure(panel)  # noqa: E731
        _figure(out, panel.stem, draw, figures.caption("qualitative"), panel_blocks, skipped)
        for b in panel_blocks:
            b.lines = ["qualitative"]
        blocks += panel_blocks
    return blocks


def _mosaic_text(value: float | None) -> str:
    return tables.MISSING if value is None else f"{round(value, 3) + 0.0:.3f}"


def _provenance(run_dir: Path, rows: pd.DataFrame) -> list[str]:
    """Header lines: the command, code and machine behind the rows, and when they were written."""
    env = read_environment(run_dir)
    lines = [f"- command: `{env['command']}`"] if env.get("command") else []
    for col in PROVENANCE:
        if col in rows:
            values = sorted({str(v) for v in rows[col].dropna()})
            if values:
                lines.append(f"- {col}: {', '.join(values)}")
    if env.get("cpu_count"):
        lines.append(f"- cpu_count: {env['cpu_count']}")
    if "time" in rows and rows["time"].notna().any():
        lines.append(f"- results written: {rows['time'].min()} to {rows['time'].max()}")
    return lines


def _files_section(shipped: bool) -> list[str]:
    if not shipped:
        return []
    return [
        "## Re-using these results",
        "",
        f"`{RUN_SUBDIR}/` holds the run's results: `results.jsonl.gz` (the rows of this report), each cell's "
        "`config.json`, `per_image.parquet` and learning curve (no saved models). Any command or notebook "
        "that takes a run folder takes this report folder: `python -m upbench report THIS_FOLDER --out DIR "
        "--metrics mIoU,BF`, `python -m upbench compare THIS_FOLDER OTHER_RUN`, "
        "`UPBENCH_RUN_DIR=THIS_FOLDER` for `notebooks/explore_results.ipynb`.",
        "",
    ]


def _markdown(blocks: list[Block]) -> str:
    """report.md: the blocks in order, figures numbered with their captions."""
    lines: list[str] = []
    number = 0
    for b in blocks:
        if b.kind == "md":
            lines += b.lines
        elif b.kind == "table":
            lines += [tables.to_markdown(b.table), ""]
        elif b.kind == "figure":
            number += 1
            lines += [f"![{b.name}](figures/{b.name}.png)", "", f"*Figure {number}. {b.caption}*", ""]
        elif b.kind == "audit":
            lines += _audit_markdown(b.frame)
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def _audit_markdown(frame: pd.DataFrame | None) -> list[str]:
    head = ["## Audit of the dataset", ""]
    if frame is None or frame.empty:
        return [*head, "No audit of the dataset in this report.", ""]
    cols = list(frame.columns)
    rows = ["| " + " | ".join(_cell(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return [*head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols), *rows, ""]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return tables.MISSING if pd.isna(value) else f"{value:.4g}"
    return str(value)


def _failure_line(row: object) -> str:
    error = (getattr(row, "error", None) or "").splitlines()[0] if getattr(row, "error", None) else ""
    return (
        f"- `{row.cell_id}` {row.label} {row.architecture} {row.protocol} x{row.scale} seed {row.seed}: "
        f"{row.status} {error}".rstrip()
    )
