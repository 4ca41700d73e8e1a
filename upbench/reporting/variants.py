"""The report's component ablation: each variant of an operator against the operator itself.

A *variant* is a suite label that runs a registered operator with other options (``[[variants]]``
in a suite, e.g. ``resfu-coarse`` = ReSFU with coarse neighbour selection). For every variant
whose base operator ran in the same setting, :func:`variant_table` gives ``variant - base`` for
mIoU, BF, BIoU and the mosaic index of the upsampled feature, each with its paired bootstrap
interval (:class:`upbench.reporting.compare.RunBootstrap`). The mosaic index is recomputed from
each cell's saved model on every validation image, so it needs ``model.pt`` in the cells.
"""

from __future__ import annotations

import pandas as pd

from upbench.metrics import headline_metrics
from upbench.reporting.compare import MODEL_METRICS, RunBootstrap

COLUMNS = ("setting_id", "scale", "variant", "base", "metric", "variant_mean", "base_mean", "diff", "ci_low", "ci_high")


def variant_pairs(analysis: RunBootstrap, setting_id: str) -> list[tuple[str, str]]:
    """``(variant label, base label)`` of a setting: labels whose operator is another label there."""
    labels = set(analysis.labels(setting_id))
    return sorted(
        (label, analysis.operators[label])
        for label in labels
        if analysis.operators.get(label, label) != label and analysis.operators[label] in labels
    )


def variant_table(analysis: RunBootstrap) -> pd.DataFrame:
    """One row per (setting, variant, metric): both means over the paired seeds, ``variant -
    base`` and its interval, ``significant``; metrics are ``analysis.metrics``."""
    out = []
    for sid in sorted(analysis.settings):
        for variant, base in variant_pairs(analysis, sid):
            seeds = sorted(set(analysis.seeds(sid, variant)) & set(analysis.seeds(sid, base)))
            for metric in analysis.metrics:
                d = analysis.difference(sid, variant, base, metric)
                means = [
                    sum(analysis.point(sid, lab, s, metric) for s in seeds) / len(seeds) if seeds else float("nan")
                    for lab in (variant, base)
                ]
                out.append(
                    {
                        "setting_id": sid,
                        "scale": analysis.settings[sid].get("scale"),
                        "variant": variant,
                        "base": base,
                        "metric": metric,
                        "variant_mean": means[0],
                        "base_mean": means[1],
                        "diff": d.diff,
                        "ci_low": d.ci_low,
                        "ci_high": d.ci_high,
                        "significant": d.significant,
                        "n_paired": d.n_paired,
                    }
                )
    return pd.DataFrame(out, columns=[*COLUMNS, "significant", "n_paired"])


def _text(row: pd.Series) -> str:
    f, digits = (1.0, 3) if row["metric"] in MODEL_METRICS else (100.0, 1)
    mark = "*" if row["significant"] else ""
    d, lo, hi = (round(f * x, digits) + 0.0 for x in (row["diff"], row["ci_low"], row["ci_high"]))
    return f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{mark}"


def _mean_text(rows: pd.DataFrame, metric: str, column: str) -> str:
    row = rows[rows["metric"] == metric].iloc[0]
    f, digits = (1.0, 3) if metric in MODEL_METRICS else (100.0, 1)
    return f"{round(f * row[column], digits) + 0.0:.{digits}f}"


def variant_analysis(run_dir, device: str = "cpu", n_boot: int = 2000) -> RunBootstrap | None:  # noqa: ANN001
    """The bootstrap for :func:`variant_table` (with the mosaic index when every train cell saved
    its model), or None when the run has no variant next to its operator."""
    from pathlib import Path

    analysis = RunBootstrap(run_dir, n_boot=n_boot)
    if not any(variant_pairs(analysis, sid) for sid in analysis.settings):
        return None
    models = all((Path(run_dir) / "cells" / c / "model.pt").is_file() for c in analysis.cells.values())
    if models:
        analysis = RunBootstrap(run_dir, (*headline_metrics(), *MODEL_METRICS), n_boot=n_boot)
        analysis.device = device
    return analysis


def variant_markdown(table: pd.DataFrame, metrics: tuple[str, ...]) -> list[str]:
    """Markdown lines of the component-ablation table."""
    if table.empty:
        return []
    lines = [
        "## Variants against their operator",
        "",
        "Each variant (the same operator with other options) against the operator itself in the same "
        "setting: `variant − operator`, mean over the paired seeds, with its 95 % paired-bootstrap "
        "interval (seeds and validation images); * marks an interval that "
        "excludes 0. mIoU, BF, BIoU in points; the mosaic index (of the upsampled feature, recomputed from "
        "each saved model on every validation image; 1 = piecewise constant blocks, 0 = none) in index "
        "units, where lower means fewer block artefacts.",
        "",
    ]
    for (sid, scale), part in table.groupby(["setting_id", "scale"], sort=True):
        lines += [
            f"### x{scale} (setting {sid}): variant − operator",
            "",
            "| variant | against | " + " | ".join(f"Δ {m}" for m in metrics) + " |",
            "|---|---|" + "--:|" * len(metrics),
        ]
        means = {}
        for (variant, base), rows in part.groupby(["variant", "base"], sort=True):
            lines.append(
                f"| {variant} | {base} | "
                + " | ".join(_text(rows[rows["metric"] == m].iloc[0]) for m in metrics)
                + " |"
            )
            means.setdefault(base, rows)
        for base, rows in sorted(means.items()):
            shown = ", ".join(f"{m} {_mean_text(rows, m, 'base_mean')}" for m in metrics)
            lines += ["", f"{base} itself (mean over the paired seeds): {shown}."]
        lines.append("")
    return lines
