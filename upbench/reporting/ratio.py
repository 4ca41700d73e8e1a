"""How a gap between two operators changes with the upsampling ratio (the report's ratio section).

A claim such as "ReSFU's advantage over bilinear grows with the ratio" is about a *change of a
difference*: the gap ``operator - reference`` at x16 minus the gap at x4. :func:`ratio_trend`
gives, for every operator and metric, the gap at each ratio with its interval
(:meth:`RunBootstrap.difference`) and the change of the gap from the smallest ratio to each
larger one with its interval (:meth:`RunBootstrap.interaction`: the same seeds and validation
images are drawn at both ratios, so the change is paired like every other difference). Settings
belong to one ratio family when their resolved configurations differ only in ``scale``.
"""

from __future__ import annotations

import json

import pandas as pd

from upbench.reporting.compare import RunBootstrap
from upbench.reporting.tables import CONTROL, REFERENCE

COLUMNS = (
    "family",
    "operator",
    "reference",
    "metric",
    "kind",
    "scale",
    "scale_from",
    "diff",
    "ci_low",
    "ci_high",
    "significant",
    "n_paired",
)


def scale_families(analysis: RunBootstrap) -> list[dict[int, str]]:
    """``{scale: setting_id}`` for each group of settings that differ only in ``scale`` and
    span at least two scales, in a stable order."""
    groups: dict[str, dict[int, str]] = {}
    for sid, setting in sorted(analysis.settings.items()):
        if not isinstance(setting.get("scale"), int):
            continue
        key = json.dumps({k: v for k, v in setting.items() if k != "scale"}, sort_keys=True, default=str)
        groups.setdefault(key, {})[setting["scale"]] = sid
    return [dict(sorted(g.items())) for _, g in sorted(groups.items()) if len(g) >= 2]


def ratio_trend(
    analysis: RunBootstrap, reference: str = REFERENCE, metrics: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """One row per (ratio family, operator, metric) and ``kind``: ``gap`` (``operator - reference``
    at ``scale``) or ``change`` (the gap at ``scale`` minus the gap at ``scale_from``, the
    family's smallest ratio). Values are fractions, like :func:`upbench.reporting.compare`;
    ``metrics``: default those of ``analysis``."""
    metrics = analysis.metrics if metrics is None else metrics
    out = []
    for number, family in enumerate(scale_families(analysis)):
        scales = list(family)
        labels = set.intersection(*(set(analysis.labels(sid)) for sid in family.values()))
        if reference not in labels:
            continue
        for label in sorted(labels - {reference}):
            for metric in (m for m in metrics if m in analysis.metrics):
                for scale in scales:
                    d = analysis.difference(family[scale], label, reference, metric)
                    out.append(_row(number, label, reference, metric, "gap", scale, None, d))
                for scale in scales[1:]:
                    d = analysis.interaction(family[scale], family[scales[0]], label, reference, metric)
                    out.append(_row(number, label, reference, metric, "change", scale, scales[0], d))
    return pd.DataFrame(out, columns=list(COLUMNS))


def _row(family: int, label: str, ref: str, metric: str, kind: str, scale: int, frm: int | None, d) -> dict:  # noqa: ANN001
    return {
        "family": family,
        "operator": label,
        "reference": ref,
        "metric": metric,
        "kind": kind,
        "scale": scale,
        "scale_from": frm,
        "diff": d.diff,
        "ci_low": d.ci_low,
        "ci_high": d.ci_high,
        "significant": d.significant,
        "n_paired": d.n_paired,
    }


def _cell(row: pd.Series) -> str:
    if not row["n_paired"]:
        return "—"
    mark = "*" if row["significant"] else ""
    return f"{100 * row['diff']:+.1f} [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]{mark}"


def ratio_section(analysis: RunBootstrap | None) -> list[str]:
    """Markdown lines: per reference (bilinear, the guide control), each operator's gap at every
    ratio and its change from the smallest ratio (empty when no setting spans two ratios)."""
    if analysis is None:
        return []
    return ratio_markdown({ref: ratio_trend(analysis, ref) for ref in (REFERENCE, CONTROL)})


def ratio_markdown(trends: dict[str, pd.DataFrame]) -> list[str]:
    """:func:`ratio_section` from the tables of :func:`ratio_trend`, one per reference."""
    lines: list[str] = []
    for reference, trend in trends.items():
        if trend.empty:
            continue
        for family, part in trend.groupby("family", sort=True):
            gaps = sorted(part.loc[part["kind"] == "gap", "scale"].unique())
            changes = sorted(part.loc[part["kind"] == "change", "scale"].unique())
            low = gaps[0]
            for kind, scales, head in (
                ("gap", gaps, [f"gap x{s}" for s in gaps]),
                ("change", changes, [f"x{s} − x{low}" for s in changes]),
            ):
                what = "gap at each ratio" if kind == "gap" else f"change of the gap from x{low}"
                lines += [
                    f"### Against {reference} (ratio family {family}): {what}",
                    "",
                    "| operator | metric | " + " | ".join(head) + " |",
                    "|---|---|" + "--:|" * len(head),
                ]
                for (label, metric), rows in part.groupby(["operator", "metric"], sort=True):
                    cells = [_cell(rows[(rows["kind"] == kind) & (rows["scale"] == s)].iloc[0]) for s in scales]
                    lines.append(f"| {label} | {metric} | " + " | ".join(cells) + " |")
                lines.append("")
    if not lines:
        return []
    intro = [
        "## Does the gap change with the ratio?",
        "",
        "Each operator's difference to the reference at every ratio (points, mean over seeds, 95 % "
        "paired-bootstrap interval over seeds and validation images) and how that gap changes from the "
        "smallest ratio (`x16 − x4`: the gap at x16 minus the gap at x4, with the same seeds and images "
        "drawn at both ratios). * marks an interval that excludes 0. A gap that grows with the ratio "
        "has a positive change with *.",
        "",
    ]
    return intro + lines
