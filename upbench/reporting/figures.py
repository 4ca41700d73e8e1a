"""Figures from seed-aggregated results (matplotlib ``Figure`` objects, no pyplot state).

Accuracy error bars show the 95 % bootstrap interval of the mean (``ci_low``/``ci_high`` columns,
added by :func:`upbench.reporting.write_report` from the per-image records), else ± the std over
seeds.

Each ``*_figure`` function returns a Figure, or raises :class:`FigureSkipped` with the reason
when its data is absent; :func:`save_figure` writes PNG and SVG with deterministic metadata so
that re-running a report gives identical files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

STYLE = {
    "svg.hashsalt": "upbench",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
DPI = 120


class FigureSkipped(Exception):
    """A figure that cannot be drawn from the results at hand; ``str()`` is the reason."""


def palette(labels: list[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per operator label (sorted), stable across figures."""
    names = sorted(set(labels))
    colours = sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colours))


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` without dates or software versions; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    with matplotlib.rc_context(STYLE):
        fig.savefig(paths[0], dpi=DPI, metadata={"Software": None})
        fig.savefig(paths[1], metadata={"Date": None, "Creator": None})
    return paths


def _new_figure(ncols: int, nrows: int = 1, size: tuple[float, float] = (4.0, 3.2)) -> tuple[Figure, np.ndarray]:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _wide(train: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per label and train group with ``<metric>`` and ``<metric>_std`` columns."""
    keys = ["architecture", "protocol", "preset", "dataset", "scale", *_setting(train), "label"]
    sub = train[train["metric"].isin(metrics)]
    mean = sub.pivot_table(index=keys, columns="metric", values="mean", aggfunc="first")
    std = sub.pivot_table(index=keys, columns="metric", values="std", aggfunc="first", dropna=False)
    wide = mean.join(std.add_suffix("_std"))
    for bound in ("ci_low", "ci_high"):
        if bound in sub:
            wide = wide.join(
                sub.pivot_table(index=keys, columns="metric", values=bound, aggfunc="first", dropna=False).add_suffix(
                    f"_{bound}"
                )
            )
    return wide.reset_index().sort_values(keys, kind="mergesort")


def _setting(frame: pd.DataFrame) -> list[str]:
    """``["setting_id"]`` when the frame separates settings (see :mod:`upbench.reporting.settings`)."""
    return ["setting_id"] if "setting_id" in frame else []


def error_bars(mean: np.ndarray, std: np.ndarray, low: np.ndarray | None, high: np.ndarray | None) -> np.ndarray:
    """``(2, n)`` lower/upper bar lengths: the bootstrap interval where known, else ± std, else 0."""
    mean, std = np.asarray(mean, float), np.nan_to_num(np.asarray(std, float))
    if low is None or high is None:
        return np.stack([std, std])
    low, high = np.asarray(low, float), np.asarray(high, float)
    known = np.isfinite(low) & np.isfinite(high)
    return np.stack([np.where(known, mean - low, std), np.where(known, high - mean, std)]).clip(min=0)


def pareto_front(points: pd.DataFrame, cost: str, accuracy: str) -> pd.DataFrame:
    """Rows of ``points`` not dominated by a cheaper-or-equal, at-least-as-accurate row, by cost."""
    ordered = points.sort_values([cost, accuracy], ascending=[True, False], kind="mergesort")
    best, keep = -np.inf, []
    for idx, value in zip(ordered.index, ordered[accuracy]):
        if value > best:
            keep.append(idx)
            best = value
    return ordered.loc[keep]


def accuracy_vs_gmacs_figure(train: pd.DataFrame, accuracy: str = "mIoU") -> Figure:
    """Accuracy (%) against GMACs per train group, the Pareto front as a dashed step line."""
    wide = _wide(train, (accuracy, "gmacs"))
    if accuracy not in wide or "gmacs" not in wide or wide[[accuracy, "gmacs"]].dropna().empty:
        raise FigureSkipped(f"no train cell has both {accuracy} and gmacs")
    wide = wide.dropna(subset=[accuracy, "gmacs"])
    colours = palette(list(wide["label"]))
    groups = list(wide.groupby(["architecture", "protocol", "preset", "dataset", "scale", *_setting(wide)], sort=True))
    fig, axes = _new_figure(len(groups))
    for ax, (key, g) in zip(axes[0], groups):
        y = g[accuracy] * 100
        std = g.get(f"{accuracy}_std", pd.Series(np.nan, index=g.index)) * 100
        low, high = (g.get(f"{accuracy}_{b}") for b in ("ci_low", "ci_high"))
        bars = error_bars(y, std, None if low is None else low * 100, None if high is None else high * 100)
        for i, (label, xi, yi) in enumerate(zip(g["label"], g["gmacs"], y)):
            ax.errorbar(xi, yi, yerr=bars[:, i : i + 1], fmt="o", color=colours[label], label=label)
            ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7)
        front = pareto_front(g.assign(acc=y), "gmacs", "acc")
        ax.step(front["gmacs"], front["acc"], where="post", ls="--", color="0.3", lw=1, label="Pareto front")
        ax.set(title=f"{key[0]} / {key[1]} / x{key[4]}", xlabel="GMACs", ylabel=f"{accuracy} (%)")
    _legend(fig, axes)
    return fig


def bf_vs_ratio_figure(train: pd.DataFrame, metric: str = "BF") -> Figure:
    """``metric`` (%) against the upsampling ratio, one line per operator, one panel per architecture."""
    sub = train[train["metric"] == metric]
    if sub.empty:
        raise FigureSkipped(f"no train cell has {metric}")
    if sub["scale"].nunique() < 2:
        raise FigureSkipped(f"{metric} is measured at one ratio only (x{sub['scale'].iloc[0]})")
    colours = palette(list(sub["label"]))
    panels = list(sub.groupby(["architecture", "preset", "dataset"], sort=True))
    fig, axes = _new_figure(len(panels))
    for ax, (key, g) in zip(axes[0], panels):
        for label, lg in g.groupby("label", sort=True):
            lg = lg.sort_values("scale", kind="mergesort")
            bounds = [lg[b] * 100 if b in lg else None for b in ("ci_low", "ci_high")]
            err = error_bars(lg["mean"] * 100, lg["std"] * 100, *bounds)
            ax.errorbar(lg["scale"], lg["mean"] * 100, yerr=err, marker="o", color=colours[label], label=label)
        scales = sorted(g["scale"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(scales, [f"x{s}" for s in scales])
        ax.minorticks_off()
        ax.set(title=f"{key[0]} ({key[1]}, {key[2]})", xlabel="upsampling ratio", ylabel=f"{metric} (%)")
    _legend(fig, axes)
    return fig


OPS_METRICS = (
    ("latency_forward", "forward latency (ms)"),
    ("latency_forward_backward", "forward+backward latency (ms)"),
    ("peak_memory", "peak memory (MiB)"),
    ("peak_memory_forward_backward", "forward+backward peak memory (MiB)"),
)


def ops_costs_figure(ops: pd.DataFrame) -> Figure:
    """Latency and peak memory against ratio (x) per input size (columns), one line per operator."""
    metrics = [(m, name) for m, name in OPS_METRICS if (ops["metric"] == m).any()] if not ops.empty else []
    if not metrics:
        raise FigureSkipped("no ops rows with latency or peak memory (run an ops suite, e.g. `upbench run ops`)")
    dims = ops[["batch", "in_channels", "lr_height", "lr_width", "guide_channels"]].astype(int)
    keys = [tuple(r) for r in dims.to_numpy()]
    ops = ops.assign(size=[f"{b}x{c}x{h}x{w} g{g}" for b, c, h, w, g in keys])
    sizes = [f"{b}x{c}x{h}x{w} g{g}" for b, c, h, w, g in sorted(set(keys))]
    colours = palette(list(ops["label"]))
    fig, axes = _new_figure(len(sizes), len(metrics))
    for row, (metric, name) in enumerate(metrics):
        for col, size in enumerate(sizes):
            ax = axes[row, col]
            g = ops[(ops["metric"] == metric) & (ops["size"] == size)]
            for label, lg in g.groupby("label", sort=True):
                lg = lg.sort_values("scale", kind="mergesort")
                ax.plot(lg["scale"], lg["mean"], marker="o", color=colours[label], label=label, **family_style(lg))
            scales = sorted(ops["scale"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(scales, [f"x{s}" for s in scales])
            ax.minorticks_off()
            if not g.empty and (g["mean"] > 0).all():
                ax.set_yscale("log")
            ax.set(title=f"input {size}", xlabel="upsampling ratio", ylabel=name)
    _legend(fig, axes)
    return fig


SIZE_METRICS = (
    ("gmacs", "GMACs"),
    ("latency_forward", "forward latency (ms)"),
    ("latency_forward_backward", "forward+backward latency (ms)"),
    ("peak_memory", "peak memory (MiB)"),
)


def ops_size_figure(ops: pd.DataFrame, rows: pd.DataFrame | None = None) -> Figure:
    """Cost against the output size (HR pixels) on log-log axes: one column per channel count, one line
    per operator (every ratio and LR size of the grid), out-of-memory cells as crosses on the top edge."""
    metrics = [(m, name) for m, name in SIZE_METRICS if not ops.empty and (ops["metric"] == m).any()]
    if not metrics:
        raise FigureSkipped(
            "no ops rows with GMACs, latency or peak memory (run an ops suite, e.g. `upbench run cost`)"
        )
    pixels = lambda d: d["lr_height"] * d["lr_width"] * d["scale"] ** 2  # noqa: E731
    ops = ops.assign(pixels=pixels(ops))
    oom = pd.DataFrame()
    if rows is not None and not rows.empty and "status" in rows:
        oom = rows[(rows["kind"] == "ops") & (rows["status"] == "oom")].drop_duplicates("cell_id")
        oom = oom.assign(pixels=pixels(oom)) if not oom.empty else oom
    channels = sorted(
        set(ops["in_channels"].astype(int)) | set(oom["in_channels"].astype(int) if not oom.empty else [])
    )
    colours = palette(sorted(set(ops["label"]) | set(oom["label"] if not oom.empty else [])))
    fig, axes = _new_figure(len(channels), len(metrics))
    for row, (metric, name) in enumerate(metrics):
        for col, c in enumerate(channels):
            ax = axes[row, col]
            g = ops[(ops["metric"] == metric) & (ops["in_channels"] == c)]
            for label, lg in g.groupby("label", sort=True):
                lg = lg.groupby("pixels", as_index=False)["mean"].median().sort_values("pixels")
                style = family_style(g[g["label"] == label])
                ax.plot(lg["pixels"], lg["mean"], marker="o", ms=3, color=colours[label], label=label, **style)
            ax.set_xscale("log")
            if not g.empty and (g["mean"] > 0).all():
                ax.set_yscale("log")
            lost = oom[oom["in_channels"] == c] if not oom.empty else oom
            for label, lg in lost.groupby("label", sort=True) if not lost.empty else ():
                ax.plot(
                    lg["pixels"], [1.0] * len(lg), "x", ms=7, color=colours[label], transform=ax.get_xaxis_transform()
                )
            ax.set(title=f"{c} channels", xlabel="output pixels (H x W)", ylabel=name)
    _legend(fig, axes)
    return fig


def operator_family(operator: object) -> str:
    """The registry family of ``operator`` (``"segmentation"`` for names the registry does not know)."""
    from upbench.errors import UnknownOperatorError
    from upbench.registry import operator_info

    try:
        return operator_info(str(operator)).family
    except UnknownOperatorError:
        return "segmentation"


def family_style(rows: pd.DataFrame) -> dict[str, str]:
    """Line style of one operator's rows: solid for the segmentation family, dashed for the task-agnostic one
    (both families drawn together, told apart at a glance; the legend says which is which)."""
    ops = rows["operator"].dropna().unique() if "operator" in rows else []
    task_agnostic = len(ops) > 0 and operator_family(ops[0]) == "task-agnostic"
    return {"linestyle": "--" if task_agnostic else "-"}


def _legend(fig: Figure, axes: np.ndarray) -> None:
    handles: dict[str, object] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        dashed = any(getattr(h, "get_linestyle", lambda: "-")() == "--" for h in handles.values())
        title = "solid: segmentation\ndashed: task-agnostic" if dashed else None
        fig.legend(
            handles.values(), handles.keys(), loc="outside right upper", fontsize=7, title=title, title_fontsize=7
        )
