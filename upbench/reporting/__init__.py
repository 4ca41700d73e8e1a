"""Reports from a run directory: tables (Markdown, LaTeX), figures, qualitative panels, mosaic index.

Public API: :func:`write_report` (what ``python -m upbench report RUN_DIR`` calls),
:func:`compare` (differences to a reference with paired-bootstrap intervals), :func:`mosaic_index`,
and for notebooks :func:`summarise` (tidy rows + seed aggregates),
:func:`train_tables` / :func:`ops_tables` with :func:`to_markdown` / :func:`to_latex`, and the
``*_figure`` functions of :mod:`upbench.reporting.figures`.
"""

from upbench.reporting.compare import compare
from upbench.reporting.figures import (
    FigureSkipped,
    accuracy_vs_gmacs_figure,
    bf_vs_ratio_figure,
    ops_costs_figure,
    ops_size_figure,
    save_figure,
)
from upbench.reporting.load import aggregate, load_rows, measurements, suite_name, summarise
from upbench.reporting.mosaic import mosaic_index
from upbench.reporting.pca import pca_rgb
from upbench.reporting.report import write_report
from upbench.reporting.tables import ops_tables, to_latex, to_markdown, train_tables

__all__ = [
    "FigureSkipped",
    "accuracy_vs_gmacs_figure",
    "aggregate",
    "bf_vs_ratio_figure",
    "compare",
    "load_rows",
    "measurements",
    "mosaic_index",
    "ops_costs_figure",
    "ops_size_figure",
    "ops_tables",
    "pca_rgb",
    "save_figure",
    "suite_name",
    "summarise",
    "to_latex",
    "to_markdown",
    "train_tables",
    "write_report",
]
