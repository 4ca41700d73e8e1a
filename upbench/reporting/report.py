"""``write_report``: tables, figures, qualitative panels and the mosaic table of a run directory.

Layout of the output folder (default ``<run dir>/report/``, inside the run folder so that running
the main job never touches tracked files; the committed example is ``reports/quick/``)::

    report.md                  every table, links to the figures, skipped figures, failed cells
    tables/<group>.md, .tex    one table per train group and per ops setting
    tables/train_summary.csv   the seed-aggregated rows behind the tables (also ops_summary.csv)
    tables/compare_<ref>.csv   :func:`upbench.reporting.compare` against bilinear and guided_bilinear
    tables/ratio_trend_<ref>.csv  each gap at every ratio and its change (:mod:`upbench.reporting.ratio`)
    tables/variants.csv        each variant against its operator (:mod:`upbench.reporting.variants`)
    figures/<name>.png, .svg   accuracy vs GMACs, BF vs ratio, ops costs, qualitative panels

Everything is sorted and formatted deterministically and carries no timestamp of its own (only the
rows' write times, in the header), so re-running the report on the same results rewrites
byte-identical files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from upbench.reporting import figures, qualitative, tables
from upbench.reporting.compare import RunBootstrap
from upbench.reporting.data_section import data_section
from upbench.reporting.learning import learning_section
from upbench.reporting.load import check_run_dir, failures, suite_name, summarise
from upbench.reporting.published import published_section
from upbench.reporting.ratio import ratio_markdown, ratio_trend
from upbench.reporting.variants import variant_analysis, variant_markdown, variant_table
from upbench.results import read_environment

log = logging.getLogger("upbench.reporting")
REPORT_SUBDIR = "report"
PROVENANCE = ("git_commit", "upbench_version", "torch_version", "device", "device_name", "hostname", "threads")
HOW_TO_READ = (
    "How to read a train table: each row is an operator, each value the mean over seeds (± std). In "
    "parentheses, the difference to bilinear with its 95 % interval from a paired bootstrap over the "
    "validation images (and seeds): * marks an interval that excludes 0; without *, the data cannot "
    "tell the two apart. Bold marks a tie group: the best value and every value not significantly "
    "worse than it. `guided_bilinear` is the control for guided operators (bilinear plus a learned "
    "1x1 projection of the guide): `ctrl` is a guided operator's difference to it, the part of its "
    "gain that is more than the guide reaching the output. op. params include the image stem a "
    "guided operator adds in the plain model; latency and memory are median [q1–q3]."
)


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    n_images: int = 3,
    device: str = "cpu",
    compute_audit: bool = False,
) -> Path:
    """Write the report of ``run_dir`` into ``out_dir`` (default ``run_dir/report``); returns the folder.

    Args:
        n_images: validation images per qualitative panel.
        device: where the saved models run for the qualitative panels.
        compute_audit: compute the audit of the run's dataset if it is not cached (else the report
            names the command that computes it).
    """
    run_dir = check_run_dir(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / REPORT_SUBDIR
    (out / "tables").mkdir(parents=True, exist_ok=True)
    data = summarise(run_dir)
    sections = [f"# upbench report: {suite_name(run_dir)}", "", *_provenance(run_dir, data["rows"]), ""]
    sections += data_section(run_dir, compute_audit=compute_audit)
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

    all_tables = tables.train_tables(data["train"], analysis) + tables.ops_tables(data["ops"])
    for table in all_tables:
        _write(out / "tables" / f"{table.stem}.md", tables.to_markdown(table))
        _write(out / "tables" / f"{table.stem}.tex", tables.to_latex(table))
    for name in ("train", "ops"):
        if not data[name].empty:
            _write(out / "tables" / f"{name}_summary.csv", data[name].to_csv(index=False, float_format="%.10g"))
    intro = [HOW_TO_READ, ""] if any(t.intervals for t in all_tables) else []
    sections += (
        ["## Tables", "", *intro] + [tables.to_markdown(t) for t in all_tables] if all_tables else ["No results."]
    )
    sections += ratio_markdown(trends)
    variants = variant_analysis(run_dir, device) if analysis is not None else None
    if variants is not None:
        table = variant_table(variants)
        _write(out / "tables" / "variants.csv", table.to_csv(index=False, float_format="%.10g"))
        sections += variant_markdown(table, variants.metrics)
    sections += published_section(suite_name(run_dir), data["train"])
    sections += learning_section(data["train"])

    skipped: list[str] = []
    drawn: list[str] = []
    for name, draw, source in (
        ("accuracy_vs_gmacs", figures.accuracy_vs_gmacs_figure, "train"),
        ("bf_vs_ratio", figures.bf_vs_ratio_figure, "train"),
        ("ops_costs", figures.ops_costs_figure, "ops"),
    ):
        _figure(out, name, lambda draw=draw, source=source: draw(data[source]), drawn, skipped)
    _figure(out, "ops_sizes", lambda: figures.ops_size_figure(data["ops"], data["rows"]), drawn, skipped)
    mosaic_lines = _qualitative(run_dir, data["rows"], out, n_images, device, drawn, skipped)

    sections += ["## Figures", ""] + [f"![{n}](figures/{n}.png)" for n in drawn] + [""]
    sections += mosaic_lines
    if skipped:
        sections += ["## Skipped figures", "", *(f"- {s}" for s in skipped), ""]
    failed = failures(data["rows"])
    if not failed.empty:
        sections += ["## Failed cells", "", *(_failure_line(r) for r in failed.itertuples()), ""]
    _write(out / "report.md", "\n".join(sections).rstrip("\n") + "\n")
    return out


def _with_intervals(train: pd.DataFrame, analysis: RunBootstrap) -> pd.DataFrame:
    """``train`` with ``ci_low``/``ci_high``: the bootstrap interval of each accuracy mean (error bars)."""
    low, high = [], []
    for r in train.itertuples():
        d = None
        if r.metric in tables.ACCURACY_METRICS and isinstance(getattr(r, "setting_id", None), str):
            d = analysis.difference(r.setting_id, r.label, None, r.metric)
        low.append(d.ci_low if d is not None and d.n_paired else float("nan"))
        high.append(d.ci_high if d is not None and d.n_paired else float("nan"))
    return train.assign(ci_low=low, ci_high=high)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _figure(out: Path, name: str, draw, drawn: list[str], skipped: list[str]) -> None:  # noqa: ANN001
    try:
        fig = draw()
    except figures.FigureSkipped as reason:
        log.info("figure %s skipped: %s", name, reason)
        skipped.append(f"{name}: {reason}")
        return
    figures.save_figure(fig, out / "figures" / name)
    drawn.append(name)


def _qualitative(
    run_dir: Path,
    rows: pd.DataFrame,
    out: Path,
    n_images: int,
    device: str,
    drawn: list[str],
    skipped: list[str],
) -> list[str]:
    """Draw the qualitative panels; return the Markdown of the mosaic-index table."""
    if qualitative.model_cells(run_dir, rows).empty:
        reason = "qualitative: no finished train cell saved a model.pt"
        log.info("figure %s", reason)
        skipped.append(reason)
        return []
    panels = qualitative.collect(run_dir, rows, n_images=n_images, device=device)
    lines = [
        "## Mosaic index",
        "",
        "Mosaic index of the upsampled feature on the qualitative images, in [-1, 1] (1: piecewise "
        "constant on s x s blocks, 0: no block structure; s is the cell's ratio, 8 for the hierarchical "
        "head's c4 feature; see `upbench.reporting.mosaic`).",
        "",
    ]
    for panel in panels:
        skipped += [f"{panel.stem}: {label}: {why}" for label, why in sorted(panel.problems.items())]
        if not panel.predictions:
            continue
        _figure(out, panel.stem, lambda panel=panel: qualitative.qualitative_figure(panel), drawn, skipped)
        lines += [f"### {panel.title}", "", "| operator | mosaic index |", "|---|---|"]
        lines += [f"| {label} | {_mosaic_text(panel.mosaic[label])} |" for label in sorted(panel.mosaic)]
        lines.append("")
    return lines


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


def _failure_line(row: object) -> str:
    error = (getattr(row, "error", None) or "").splitlines()[0] if getattr(row, "error", None) else ""
    return (
        f"- `{row.cell_id}` {row.label} {row.architecture} {row.protocol} x{row.scale} seed {row.seed}: "
        f"{row.status} {error}".rstrip()
    )
