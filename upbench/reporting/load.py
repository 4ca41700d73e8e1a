"""Read a run directory into tidy DataFrames and aggregate seeds (mean, std, n)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomllib

from upbench.errors import UpbenchError

#: Columns that identify a train configuration (one table row per label in each group).
TRAIN_KEYS = ("label", "operator", "options", "architecture", "protocol", "preset", "dataset", "scale")
#: Columns that identify an ops measurement.
OPS_KEYS = (
    "label",
    "operator",
    "options",
    "scale",
    "batch",
    "in_channels",
    "lr_height",
    "lr_width",
    "guide_channels",
    "dtype",
    "device",
)
#: Statistics that stand for a cell's measurement (latency rows keep their median).
POINT_STATISTICS = ("value", "median")
CELL_METRIC = "cell"


def check_run_dir(run_dir: str | Path) -> Path:
    """The folder holding the results of ``run_dir``: the run folder itself, or the ``run/`` folder a
    report ships (:mod:`upbench.reporting.bundle`); :class:`UpbenchError` when there is neither."""
    from upbench.reporting.bundle import resolve_run_dir

    return resolve_run_dir(run_dir)


def load_rows(run_dir: str | Path) -> pd.DataFrame:
    """Every row of the latest finished attempt of each cell (``cell`` rows and failures included)."""
    from upbench.results import read_results

    df = read_results(check_run_dir(run_dir))
    if "label" not in df or df["label"].isna().all():
        df["label"] = df.get("operator")
    df["label"] = df["label"].fillna(df["operator"])
    for col in set(TRAIN_KEYS + OPS_KEYS) - set(df.columns):
        df[col] = "none"
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return _without_impossible_ratios(df, run_dir)


def ratio_metrics() -> set[str]:
    """The metrics that are fractions in [0, 1] (mIoU, BF, BIoU, accuracies, per-class IoU ...):
    every registered metric score in unit ``fraction`` (not the training diagnostics, which are
    fractions without bounds)."""
    from upbench.metrics.registry import scores

    return {s.key for s in scores() if s.unit == "fraction"}


def _without_impossible_ratios(df: pd.DataFrame, run_dir: str | Path) -> pd.DataFrame:
    """``df`` without the ``ok`` rows of a ratio metric outside [0, 1], with one warning naming them.

    Tables show these metrics in percent: a stored 7.5 (a value already in percent, a wrong
    metric) would be printed as 750 %; such a row is flagged and never rendered."""
    ratios = ratio_metrics()
    base = df["metric"].astype(str).str.replace(r"_class_\d+$", "", regex=True)
    bad = base.isin(ratios) & np.isfinite(df["value"]) & ~df["value"].between(0.0, 1.0) & (df["status"] == "ok")
    if not bad.any():
        return df
    shown = [f"{r.metric} {r.value:g} (cell {r.cell_id})" for r in df[bad].head(3).itertuples()]
    more = f" and {int(bad.sum()) - 3} more" if bad.sum() > 3 else ""
    warnings.warn(
        f"{run_dir}: {int(bad.sum())} ratio value(s) outside [0, 1] left out of the tables: {', '.join(shown)}{more}",
        RuntimeWarning,
        stacklevel=3,
    )
    return df[~bad].reset_index(drop=True)


def measurements(rows: pd.DataFrame) -> pd.DataFrame:
    """The successful point measurements: status ``ok``, a finite value, no ``cell`` rows."""
    keep = (
        (rows["status"] == "ok")
        & (rows["metric"] != CELL_METRIC)
        & rows["statistic"].isin(POINT_STATISTICS)
        & np.isfinite(rows["value"])
    )
    return rows[keep].reset_index(drop=True)


def aggregate(points: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """Mean, sample std (NaN for one value) and n of ``value`` over seeds, per ``keys`` + metric."""
    cols = [*keys, "metric"]
    if points.empty:
        return pd.DataFrame(columns=[*cols, "unit", "mean", "std", "n"])
    grouped = points.groupby(cols, sort=True, dropna=False)
    out = grouped["value"].agg(mean="mean", std="std", n="count").reset_index()
    out["unit"] = grouped["unit"].first().to_numpy()
    return out.sort_values(cols, kind="mergesort").reset_index(drop=True)


def summarise(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """``{"rows", "train", "ops"}``: all rows and the seed-aggregated train and ops measurements.

    Train cells are aggregated over seeds only within one setting (``setting_id``: the resolved
    configuration without seed and operator, :mod:`upbench.reporting.settings`); ``q1``/``q3``
    (train and ops) are the (seed-averaged) quartiles of measurements that have them (latency).
    """
    from upbench.reporting.settings import attach_setting_ids

    run_dir = check_run_dir(run_dir)
    rows = load_rows(run_dir)
    points = measurements(rows)
    train_rows, _ = attach_setting_ids(rows[rows["kind"] == "train"], run_dir)
    keys = (*TRAIN_KEYS, "setting_id")
    train = aggregate(measurements(train_rows), keys)
    return {
        "rows": rows,
        "train": _with_quartiles(train, train_rows, keys),
        "ops": _with_quartiles(
            aggregate(points[points["kind"] == "ops"], OPS_KEYS), rows[rows["kind"] == "ops"], OPS_KEYS
        ),
    }


def _with_quartiles(summary: pd.DataFrame, rows: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """``summary`` with ``q1`` and ``q3`` columns (NaN where a metric has no quartile rows)."""
    cols = [*keys, "metric"]
    quart = rows[(rows["status"] == "ok") & rows["statistic"].isin(["q1", "q3"]) & np.isfinite(rows["value"])]
    if summary.empty or quart.empty:
        return summary.assign(q1=np.nan, q3=np.nan)
    wide = quart.pivot_table(index=cols, columns="statistic", values="value", aggfunc="mean", dropna=False)
    wide = wide.reindex(columns=["q1", "q3"]).reset_index()
    return summary.merge(wide, on=cols, how="left")


def failures(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per cell whose ``cell`` row is not ``ok``: identity, status and error."""
    cells = rows[(rows["metric"] == CELL_METRIC) & (rows["status"] != "ok")]
    cols = ["cell_id", "kind", "label", "architecture", "protocol", "scale", "seed", "status", "error"]
    return cells[[c for c in cols if c in cells]].sort_values("cell_id", kind="mergesort").reset_index(drop=True)


def suite_name(run_dir: str | Path) -> str:
    """The ``[suite] name`` of ``run_dir/suite.toml``, else the ``suite`` column, else the folder name."""
    path = check_run_dir(run_dir)
    toml = path / "suite.toml"
    if toml.is_file():
        name = tomllib.loads(toml.read_text(encoding="utf-8")).get("suite", {}).get("name")
        if name:
            return str(name)
    rows = load_rows(path)
    if "suite" in rows and rows["suite"].notna().any():
        return str(rows["suite"].dropna().iloc[0])
    return path.resolve().name


def cell_config(run_dir: str | Path, cell_id: str) -> dict[str, Any]:
    """The resolved config of a cell (``cells/<cell_id>/config.json``)."""
    path = check_run_dir(run_dir) / "cells" / cell_id / "config.json"
    if not path.is_file():
        raise UpbenchError(f"cell {cell_id}: {path} is missing")
    return json.loads(path.read_text(encoding="utf-8"))
