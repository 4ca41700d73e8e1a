"""The report's "Did every operator learn?" section (issue #14, item 4).

From the seed-aggregated train summary (:func:`upbench.reporting.load.summarise`): per setting
and operator, the mean relative change of the operator's own parameters and the mean late loss
trend (both defined in :mod:`upbench.training.diagnostics`), with flags for operators that barely
moved and for runs still clearly learning when they stopped.
"""

from __future__ import annotations

import pandas as pd

#: Below this relative weight change an operator is flagged as "barely moved".
STILL_THRESHOLD = 1e-3
#: A loss still falling by more than this fraction over the last tenth is flagged "still falling".
FALLING_THRESHOLD = -0.05
METRICS = ("operator_weight_change", "loss_trend_last10")


def learning_section(train: pd.DataFrame) -> list[str]:
    """Markdown lines: one table over every setting with learning diagnostics (empty if none)."""
    if train.empty or not train["metric"].isin(METRICS).any():
        return []
    rows = train[train["metric"].isin(METRICS)]
    index = ["architecture", "protocol", "scale", "setting_id", "label"]
    wide = rows.pivot_table(index=index, columns="metric", values="mean", aggfunc="first", dropna=False)
    wide = wide.reindex(columns=list(METRICS)).dropna(how="all")
    lines = [
        "## Did every operator learn?",
        "",
        "Relative change of each operator's own parameters from initialisation to the final checkpoint "
        "(`||θ_end − θ_0|| / ||θ_0||`, mean over seeds; — for parameter-free operators) and the loss trend "
        "over the last 10 % of the iterations (fitted change relative to the mean loss there; about 0 = "
        f"flattened). Flags: *barely moved* below {STILL_THRESHOLD:g}, *still falling* below "
        f"{FALLING_THRESHOLD:g}.",
        "",
        "| architecture | protocol | scale | setting | operator | weight change | loss trend (last 10 %) | flag |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (arch, protocol, scale, setting, label), r in wide.iterrows():
        change, trend = r["operator_weight_change"], r["loss_trend_last10"]
        flags = []
        if pd.notna(change) and change < STILL_THRESHOLD:
            flags.append("barely moved")
        if pd.notna(trend) and trend < FALLING_THRESHOLD:
            flags.append("still falling")
        cells = [arch, protocol, _num(scale, ".0f"), str(setting)[:8], label, _num(change, ".4f"), _num(trend, "+.3f")]
        lines.append("| " + " | ".join([*cells, ", ".join(flags)]) + " |")
    return [*lines, ""]


def _num(value: float, fmt: str) -> str:
    return "—" if pd.isna(value) else format(value, fmt)
