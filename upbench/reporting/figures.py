"""Figures from seed-aggregated results (matplotlib ``Figure`` objects, no pyplot state).

Made for up to about 20 operators: every operator keeps one colour and marker in every figure
(colour by family: the bilinear reference, the guide control, the segmentation line and the
task-agnostic family; a distinct marker per operator within its family), points carry direct
labels placed so that they do not collide (:func:`place_labels`, leader lines where a label had
to move away), cost axes turn logarithmic where values span more than a decade, and many
operators are drawn as small multiples (one panel each, the others in faint grey) rather than
as one crowded panel. Spread is always drawn: accuracy error bars are the 95 % bootstrap interval
of the mean (``ci_low``/``ci_high`` columns, added by :func:`upbench.reporting.write_report` from
the per-image records), else ± the std over seeds; latency bands are the interquartile range of
the timed calls. :data:`CAPTIONS` and :func:`caption` say so under each figure in the reports.

Each ``*_figure`` function returns a Figure, or raises :class:`FigureSkipped` with the reason
when its data is absent; :func:`save_figure` writes PNG and SVG with deterministic metadata so
that re-running a report gives identical files.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from upbench.reporting.figure_style import (
    CONTROL,
    CROWDED,
    DPI,
    FAMILY_COLOURS,
    FAMILY_NAMES,
    GREY,
    MARKERS,
    REFERENCE,
    STYLE,
    FigureSkipped,
    _family_legend,
    _grid,
    _log_if_spread,
    _new_figure,
    label_family,
    operator_family,
    operator_styles,
    place_labels,
    save_figure,
)

#: The figures (here) and their shared look (:mod:`.figure_style`), all under ``figures.<name>``.
__all__ = [
    "CONTROL",
    "DPI",
    "FAMILY_COLOURS",
    "FAMILY_NAMES",
    "GREY",
    "MARKERS",
    "REFERENCE",
    "STYLE",
    "FigureSkipped",
    "accuracy_vs_gmacs_figure",
    "bars_kind",
    "bf_vs_ratio_figure",
    "caption",
    "error_bars",
    "label_family",
    "operator_family",
    "operator_styles",
    "ops_costs_figure",
    "ops_size_figure",
    "pareto_front",
    "place_labels",
    "save_figure",
]


# --------------------------------------------------------------------------- accuracy figures
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
    wide = wide.reset_index().sort_values(keys, kind="mergesort")
    if "operator" in train:
        wide["operator"] = wide["label"].map(dict(zip(train["label"], train["operator"])))
    return wide


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


def bars_kind(train: pd.DataFrame, metric: str) -> str:
    """What the error bars of ``metric`` are: ``interval`` (95 % bootstrap), ``std`` or ``none``."""
    sub = train[train["metric"] == metric] if "metric" in train else train
    if {"ci_low", "ci_high"} <= set(sub) and np.isfinite(pd.to_numeric(sub["ci_low"], errors="coerce")).any():
        return "interval"
    if "std" in sub and (pd.to_numeric(sub["std"], errors="coerce") > 0).any():
        return "std"
    return "none"


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
    """Accuracy (%) against the model's GMACs, one panel per train setting: every operator a point
    (family colour, own marker, direct label), its error bar, the Pareto front as a dashed step
    line; the GMACs axis is logarithmic where the costs span more than a decade."""
    wide = _wide(train, (accuracy, "gmacs"))
    if accuracy not in wide or "gmacs" not in wide or wide[[accuracy, "gmacs"]].dropna().empty:
        raise FigureSkipped(f"no train cell has both {accuracy} and gmacs")
    wide = wide.dropna(subset=[accuracy, "gmacs"])
    styles = operator_styles(wide)
    groups = list(wide.groupby(["architecture", "protocol", "preset", "dataset", "scale", *_setting(wide)], sort=True))
    cols, rows = _grid(len(groups), 2)
    fig, axes = _new_figure(cols, rows, size=(6.4, 4.6))
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    to_label = []
    for ax, (key, g) in zip(axes.flat, groups):
        y = g[accuracy].to_numpy() * 100
        std = g.get(f"{accuracy}_std", pd.Series(np.nan, index=g.index)).to_numpy() * 100
        low, high = (g.get(f"{accuracy}_{b}") for b in ("ci_low", "ci_high"))
        bars = error_bars(y, std, None if low is None else low * 100, None if high is None else high * 100)
        front = pareto_front(g.assign(acc=y), "gmacs", "acc")
        ax.step(front["gmacs"], front["acc"], where="post", ls="--", color="0.45", lw=1, zorder=1)
        for i, label in enumerate(g["label"]):
            s = styles[label]
            ax.errorbar(
                g["gmacs"].iloc[i], y[i], yerr=bars[:, i : i + 1], fmt=s["marker"], color=s["color"], ms=5,
                mfc="white" if s["family"] == "task-agnostic" else s["color"], capsize=2, lw=1, zorder=3,
            )  # fmt: skip
        log = _log_if_spread(ax, g["gmacs"])
        ax.set(
            title=f"{key[0]} / {key[1]} / x{key[4]} ({key[2]}, {key[3]})",
            xlabel="GMACs of the whole model" + (" (log scale)" if log else ""),
            ylabel=f"{accuracy} (%)",
        )
        ax.margins(x=0.12, y=0.08)
        to_label.append((ax, g["gmacs"].to_numpy(float), y, list(g["label"])))
    _family_legend(fig, styles, [(Line2D([], [], ls="--", color="0.45"), "Pareto front")])
    for ax, xs, ys, labels in to_label:  # last: labels are placed on the final layout
        place_labels(ax, xs, ys, labels, [styles[lab]["color"] for lab in labels])
    return fig


def bf_vs_ratio_figure(train: pd.DataFrame, metric: str = "BF") -> Figure:
    """``metric`` (%) against the upsampling ratio with error bars; one panel per architecture, or
    with more than :data:`CROWDED` operators one panel per operator (bilinear in grey in each)."""
    sub = train[train["metric"] == metric]
    if sub.empty:
        raise FigureSkipped(f"no train cell has {metric}")
    if sub["scale"].nunique() < 2:
        raise FigureSkipped(f"{metric} is measured at one ratio only (x{sub['scale'].iloc[0]})")
    archs = [
        (k, g) for k, g in sub.groupby(["architecture", "preset", "dataset"], sort=True) if g["scale"].nunique() > 1
    ]
    if not archs:
        raise FigureSkipped(f"{metric} is measured at one ratio per architecture only")
    sub = pd.concat([g for _, g in archs])
    styles = operator_styles(sub)
    labels = sorted(set(sub["label"]), key=lambda lab: (lab != REFERENCE, lab))
    multiples = len(labels) > CROWDED
    panels = [(a, lab) for a in archs for lab in labels] if multiples else [(a, None) for a in archs]
    cols, rows = _grid(len(panels), 5 if multiples else 3)
    fig, axes = _new_figure(cols, rows, size=(2.6, 2.2) if multiples else (4.2, 3.3), sharey=multiples)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    scales = sorted(sub["scale"].unique())
    ends: list[tuple] = []  # (axes, x, y, label) of each line's last point, labelled directly
    for ax, ((key, g), only) in zip(axes.flat, panels):
        for label, lg in g.groupby("label", sort=True):
            if only is not None and label not in (only, REFERENCE):
                continue
            lg = lg.sort_values("scale", kind="mergesort")
            bounds = [lg[b] * 100 if b in lg else None for b in ("ci_low", "ci_high")]
            err = error_bars(lg["mean"] * 100, lg["std"] * 100, *bounds)
            faint = only is not None and label != only
            s = styles[label]
            ax.errorbar(
                lg["scale"], lg["mean"] * 100, yerr=err, marker=s["marker"], color=GREY if faint else s["color"],
                ms=4, capsize=2, lw=1, label=label, zorder=1 if faint else 3,
            )  # fmt: skip
            if only is None:
                ends.append((ax, lg["scale"].iloc[-1], lg["mean"].iloc[-1] * 100, label))
        ax.set_xscale("log", base=2)
        ax.set_xticks(scales, [f"x{s}" for s in scales])
        ax.minorticks_off()
        title = only if only is not None else f"{key[0]} ({key[1]}, {key[2]})"
        ax.set_title(title, fontsize=8, color=styles[only]["color"] if only else "black")
        ax.set(xlabel="upsampling ratio" if ax.get_subplotspec().is_last_row() or not multiples else "",
               ylabel=f"{metric} (%)" if ax.get_subplotspec().is_first_col() else "")  # fmt: skip
        ax.margins(x=0.25 if only is None else 0.1)
    extra = [(Line2D([], [], color=GREY), "bilinear, for reference")] if multiples else []
    _family_legend(fig, styles, extra)
    for ax in {id(e[0]): e[0] for e in ends}.values():
        mine = [e for e in ends if e[0] is ax]
        place_labels(ax, np.array([e[1] for e in mine], float), np.array([e[2] for e in mine], float),
                     [e[3] for e in mine], [styles[e[3]]["color"] for e in mine])  # fmt: skip
    return fig


# --------------------------------------------------------------------------- cost figures
OPS_METRICS = (
    ("latency_forward", "forward latency (ms)"),
    ("latency_forward_backward", "forward+backward latency (ms)"),
    ("peak_memory", "peak memory (MiB)"),
    ("peak_memory_forward_backward", "forward+backward peak memory (MiB)"),
)


def _ops_sizes(ops: pd.DataFrame) -> pd.DataFrame:
    dims = ops[["batch", "in_channels", "lr_height", "lr_width", "guide_channels"]].astype(int)
    return ops.assign(size=[f"{b}x{c}x{h}x{w} g{g}" for b, c, h, w, g in dims.to_numpy()])


def ops_costs_figure(ops: pd.DataFrame) -> Figure:
    """A dot plot per cost metric (rows) and input size (columns): operators listed on the y axis
    (sorted by the cost at the largest ratio, labelled directly), one marker per ratio on a log x
    axis, the interquartile range of the timed calls as a horizontal bar where known."""
    metrics = [(m, name) for m, name in OPS_METRICS if (ops["metric"] == m).any()] if not ops.empty else []
    if not metrics:
        raise FigureSkipped("no ops rows with latency or peak memory (run an ops suite, e.g. `upbench run ops`)")
    ops = _ops_sizes(ops)
    sizes = sorted(set(ops["size"]), key=lambda s: [int(v) for v in s.replace(" g", "x").split("x")])
    scales = sorted(ops["scale"].unique())
    ratio_colours = dict(zip(scales, matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(scales)))))
    styles = operator_styles(ops)
    n_labels = ops["label"].nunique()
    fig, axes = _new_figure(len(sizes), len(metrics), size=(3.6, 0.8 + 0.2 * n_labels))
    for row, (metric, name) in enumerate(metrics):
        for col, size in enumerate(sizes):
            ax = axes[row, col]
            g = ops[(ops["metric"] == metric) & (ops["size"] == size)]
            if g.empty:
                ax.set_visible(False)
                continue
            top = g[g["scale"] == g["scale"].max()].set_index("label")["mean"]
            order = sorted(set(g["label"]), key=lambda lab: (top.get(lab, np.inf), lab))
            ypos = {lab: i for i, lab in enumerate(order)}
            for scale, sg in g.groupby("scale", sort=True):
                y = sg["label"].map(ypos).to_numpy(float)
                if {"q1", "q3"} <= set(sg) and sg["q1"].notna().any():
                    ax.hlines(y, sg["q1"], sg["q3"], color=ratio_colours[scale], lw=2.5, alpha=0.5)
                ax.plot(sg["mean"], y, "o", ms=4, color=ratio_colours[scale], label=f"x{scale}")
            ax.set_yticks(range(len(order)), order, fontsize=7)
            for tick, lab in zip(ax.get_yticklabels(), order):
                tick.set_color(styles[lab]["color"])
            ax.set_xscale("log") if (g["mean"] > 0).all() else None
            ax.set_ylim(-0.7, len(order) - 0.3)
            ax.grid(axis="y", alpha=0.15)
            ax.set_title(f"input {size}", fontsize=8)
            ax.set_xlabel(name)
    handles = [Line2D([], [], marker="o", ls="", color=ratio_colours[s]) for s in scales]
    fig.legend(handles, [f"x{s}" for s in scales], loc="outside lower center", ncols=len(scales), fontsize=7,
               title="upsampling ratio (bar: interquartile range of the timed calls)", title_fontsize=7,
               frameon=False)  # fmt: skip
    return fig


SIZE_METRICS = (
    ("gmacs", "GMACs"),
    ("latency_forward", "forward latency (ms)"),
    ("latency_forward_backward", "forward+backward latency (ms)"),
    ("peak_memory", "peak memory (MiB)"),
)


def ops_size_figure(ops: pd.DataFrame, rows: pd.DataFrame | None = None, metric: str | None = None) -> Figure:
    """Cost against the output size (HR pixels) on log-log axes, as small multiples: one panel per
    operator (titled with its name), one line per channel count (median over the ratios and LR
    sizes that give the same output size; the interquartile band of the timed calls where known),
    every other operator in faint grey behind it, out-of-memory cells as crosses on the top edge.
    ``metric``: the cost drawn (default: forward+backward latency, else forward latency, else the
    first of :data:`SIZE_METRICS` present)."""
    present = [m for m, _ in SIZE_METRICS if not ops.empty and "metric" in ops and (ops["metric"] == m).any()]
    if not present:
        raise FigureSkipped(
            "no ops rows with GMACs, latency or peak memory (run an ops suite, e.g. `upbench run cost`)"
        )
    if metric is None:
        metric = next((m for m in ("latency_forward_backward", "latency_forward") if m in present), present[0])
    if metric not in present:
        raise FigureSkipped(f"no ops rows with {metric}")
    name = dict(SIZE_METRICS)[metric]
    pixels = lambda d: d["lr_height"] * d["lr_width"] * d["scale"] ** 2  # noqa: E731
    ops = ops[ops["metric"] == metric]
    ops = ops.assign(pixels=pixels(ops))
    oom = pd.DataFrame()
    if rows is not None and not rows.empty and "status" in rows:
        oom = rows[(rows["kind"] == "ops") & (rows["status"] == "oom")].drop_duplicates("cell_id")
        oom = oom.assign(pixels=pixels(oom)) if not oom.empty else oom
    channels = sorted(
        set(ops["in_channels"].astype(int)) | set(oom["in_channels"].astype(int) if not oom.empty else [])
    )
    shades = dict(zip(channels, ("#1b4f8a", "#e08214", "#5e3c99", "#1b7837", "#b2182b")))
    styles = operator_styles(pd.concat([ops[["label"]], oom[["label"]]]) if not oom.empty else ops)
    labels = sorted(styles, key=lambda lab: (lab != REFERENCE, styles[lab]["family"], lab))
    cols, nrows = _grid(len(labels), 5)
    fig, axes = _new_figure(cols, nrows, size=(2.5, 2.1), sharex=True, sharey=True)
    for ax in axes.flat[len(labels) :]:
        ax.set_visible(False)
    curves = {}
    for (label, c), lg in ops.groupby(["label", "in_channels"], sort=True):
        agg = {"mean": "median", **({"q1": "median", "q3": "median"} if {"q1", "q3"} <= set(lg) else {})}
        curves[(label, int(c))] = lg.groupby("pixels", as_index=False).agg(agg).sort_values("pixels")
    for ax, label in zip(axes.flat, labels):
        for (other, _), curve in curves.items():
            if other != label:
                ax.plot(curve["pixels"], curve["mean"], color=GREY, lw=0.6, alpha=0.6, zorder=1)
        for (other, c), curve in curves.items():
            if other != label:
                continue
            ax.plot(curve["pixels"], curve["mean"], marker="o", ms=2.5, lw=1.2, color=shades[c], zorder=3)
            if "q1" in curve and curve["q1"].notna().any():
                ax.fill_between(curve["pixels"], curve["q1"], curve["q3"], color=shades[c], alpha=0.25, lw=0)
        lost = oom[oom["label"] == label] if not oom.empty else oom
        for c, lg in lost.groupby("in_channels") if not lost.empty else ():
            ax.plot(lg["pixels"], [1.0] * len(lg), "x", ms=6, color=shades[int(c)], transform=ax.get_xaxis_transform())
        ax.set_xscale("log")
        if (ops["mean"] > 0).all():
            ax.set_yscale("log")
        ax.set_title(label, fontsize=8, color=styles[label]["color"])
    for ax in axes[-1]:
        ax.set_xlabel("output pixels (H x W)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(name, fontsize=7)
    handles = [Line2D([], [], color=shades[c], marker="o", ms=3) for c in channels]
    names = [f"{c} channels" for c in channels]
    if not oom.empty:
        handles.append(Line2D([], [], marker="x", ls="", color="0.3"))
        names.append("out of memory")
    handles.append(Line2D([], [], color=GREY))
    names.append("the other operators")
    fig.legend(handles, names, loc="outside lower center", ncols=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"{name} against output size (title colour: family)", fontsize=9)
    return fig


# --------------------------------------------------------------------------- captions
def caption(name: str, train: pd.DataFrame | None = None) -> str:
    """The caption of figure ``name`` (a figure stem of the report), saying what marks, bars and
    bands are; accuracy captions name the kind of error bar the data gave (:func:`bars_kind`)."""
    bars = {
        "interval": "error bars: 95 % bootstrap interval of the mean over validation images and seeds",
        "std": "error bars: ± std over seeds (no per-image records, so no intervals)",
        "none": "no error bars (one seed and no per-image records)",
    }
    if name == "accuracy_vs_gmacs":
        kind = bars_kind(train, "mIoU") if train is not None else "interval"
        return (
            "mIoU against the whole model's GMACs, one point per operator (mean over seeds; "
            f"{bars[kind]}); colour: family, marker: operator; dashed: the Pareto front (no operator "
            "is both cheaper and more accurate). GMACs are on a log scale where they span more than a decade."
        )
    if name == "bf_vs_ratio":
        kind = bars_kind(train, "BF") if train is not None else "interval"
        return f"BF against the upsampling ratio, mean over seeds ({bars[kind]}); grey: bilinear for reference."
    if name == "ops_costs":
        return (
            "Cost of each operator alone at every ratio and input size (median of the timed calls; bar: "
            "interquartile range where recorded), operators sorted by the cost at the largest ratio; log scale."
        )
    if name.startswith("ops_sizes"):
        return (
            "Cost against output size, one panel per operator (log-log; grey: the other operators; line: "
            "median over the grid points with that output size; band: interquartile range of the timed "
            "calls; x: out of memory)."
        )
    if name.startswith("learning_curves"):
        return (
            "Training loss per operator (running mean over the logged steps, window in the title; line: mean "
            "over seeds, band: min–max over seeds; grey: bilinear); last panel: the learning-rate schedule."
        )
    if name.startswith("qualitative"):
        return (
            "Each operator's model (lowest seed) on the first validation images: prediction, error "
            "(red: wrong, grey: ignored) and a PCA colouring of the upsampled feature; class colours in the legend."
        )
    return ""
