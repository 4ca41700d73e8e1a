"""Learning curves: every train cell's ``train_log.csv`` (loss and learning rate per logged step).

:func:`load_curves` reads them into one tidy frame (one row per cell and logged iteration, with the
cell's setting and operator label); :func:`curve_bands` smooths each seed's loss with a running
mean and aggregates over seeds (mean, min, max per iteration); :func:`learning_curves_figure`
draws one small-multiples figure per setting: a panel per operator (its mean over seeds as a
line, the min–max band over seeds, bilinear in grey for reference) and a last panel with the
learning-rate schedule.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from upbench.reporting.bundle import train_log_path
from upbench.reporting.figures import GREY, REFERENCE, FigureSkipped, _grid, _new_figure, operator_styles
from upbench.reporting.load import CELL_METRIC

COLUMNS = ("setting_id", "architecture", "protocol", "preset", "dataset", "scale", "label", "operator", "seed")


def load_curves(run_dir: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """``COLUMNS`` + ``iteration, loss, lr``: the learning curve of every finished train cell that
    logged one (``rows`` with a ``setting_id`` column, e.g. from
    :func:`upbench.reporting.settings.attach_setting_ids`)."""
    from upbench.training.train_log import read_train_log

    cells = rows[(rows["metric"] == CELL_METRIC) & (rows["status"] == "ok") & (rows["kind"] == "train")]
    frames = []
    for r in cells.drop_duplicates("cell_id").itertuples():
        path = train_log_path(Path(run_dir) / "cells" / str(r.cell_id))
        if path is None:
            continue
        log = read_train_log(path)
        frames.append(log.assign(**{c: getattr(r, c, None) for c in COLUMNS}))
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "iteration", "loss", "lr"])
    out = pd.concat(frames, ignore_index=True)
    return out[[*COLUMNS, "iteration", "loss", "lr"]].sort_values([*COLUMNS[:7], "seed", "iteration"], kind="mergesort")


def smoothing_window(n_points: int) -> int:
    """Running-mean window for a curve of ``n_points`` logged steps: about 2 % of them, odd, >= 1."""
    w = max(1, round(n_points / 50))
    return w if w % 2 else w + 1


def curve_bands(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, label, iteration): ``mean``, ``low``, ``high`` over seeds of the smoothed loss
    (centred running mean, :func:`smoothing_window`), ``n_seeds``, ``lr`` (first seed) and ``window``."""
    keys = ["setting_id", "label"]
    out = []
    for key, g in curves.groupby(keys, sort=True):
        window = smoothing_window(int(g.groupby("seed").size().max()))
        smooth = g.groupby("seed", group_keys=False)["loss"].apply(
            lambda s: s.rolling(window, center=True, min_periods=1).mean()  # noqa: B023
        )
        g = g.assign(smooth=smooth.reindex(g.index))
        stats = g.groupby("iteration").agg(
            mean=("smooth", "mean"), low=("smooth", "min"), high=("smooth", "max"), n_seeds=("seed", "nunique"),
            lr=("lr", "first"),
        )  # fmt: skip
        out.append(stats.reset_index().assign(setting_id=key[0], label=key[1], window=window))
    if not out:
        return pd.DataFrame(columns=[*keys, "iteration", "mean", "low", "high", "n_seeds", "lr", "window"])
    return pd.concat(out, ignore_index=True)[[*keys, "iteration", "mean", "low", "high", "n_seeds", "lr", "window"]]


def figure_stem(setting: pd.Series, unique: bool) -> str:
    """``learning_curves-<architecture>-<protocol>-x<scale>-<preset>-<dataset>`` (+ the setting id
    when two settings share that)."""
    parts = [
        setting["architecture"],
        setting["protocol"],
        f"x{setting['scale']}",
        setting["preset"],
        setting["dataset"],
    ]
    stem = "learning_curves-" + "-".join(re.sub(r"[^A-Za-z0-9.]+", "-", str(p)).strip("-") for p in parts)
    return stem if unique else f"{stem}-{setting['setting_id']}"


def learning_figures(curves: pd.DataFrame) -> list[tuple[str, str, Figure]]:
    """``(stem, title, figure)`` per setting with curves (see the module)."""
    if curves.empty:
        raise FigureSkipped("no train cell logged a learning curve (cells/<id>/train_log.csv)")
    bands = curve_bands(curves)
    settings = curves.drop_duplicates("setting_id").sort_values(list(COLUMNS[1:6]) + ["setting_id"], kind="mergesort")
    titles = settings[list(COLUMNS[1:6])].astype(str).agg("/".join, axis=1)
    out = []
    for (_, setting), title_key in zip(settings.iterrows(), titles):
        unique = int((titles == title_key).sum()) == 1
        arch, protocol, preset, dataset, scale = (setting[c] for c in COLUMNS[1:6])
        title = f"{arch} / {protocol} / x{scale} ({preset}, {dataset})"
        sub = curves[curves["setting_id"] == setting["setting_id"]]
        fig = learning_curves_figure(sub, bands[bands["setting_id"] == setting["setting_id"]], title)
        out.append((figure_stem(setting, unique), title, fig))
    return out


def learning_curves_figure(curves: pd.DataFrame, bands: pd.DataFrame, title: str) -> Figure:
    """One setting's curves as small multiples (see the module)."""
    styles = operator_styles(curves)
    labels = sorted(styles, key=lambda lab: (lab != REFERENCE, styles[lab]["family"], lab))
    cols, rows = _grid(len(labels) + 1, 5)
    fig, axes = _new_figure(cols, rows, size=(2.5, 1.9), sharex=True)
    flat = list(axes.flat)
    for ax in flat[len(labels) + 1 :]:
        ax.set_visible(False)
    loss_axes = flat[: len(labels)]
    ref = bands[bands["label"] == REFERENCE]
    positive = (bands["low"] > 0).all()
    lo, hi = bands["low"].min(), bands["high"].max()
    for ax, label in zip(loss_axes, labels):
        b = bands[bands["label"] == label]
        colour = styles[label]["color"]
        if not ref.empty and label != REFERENCE:
            ax.plot(ref["iteration"], ref["mean"], color=GREY, lw=1, zorder=1)
        ax.fill_between(b["iteration"], b["low"], b["high"], color=colour, alpha=0.25, lw=0, zorder=2)
        ax.plot(b["iteration"], b["mean"], color=colour, lw=1.2, zorder=3)
        n = int(b["n_seeds"].max()) if not b.empty else 0
        ax.set_title(f"{label} ({n} seed{'s' if n != 1 else ''})", fontsize=8, color=colour)
        if positive and np.isfinite(lo) and hi / max(lo, 1e-12) > 10:
            ax.set_yscale("log")
        ax.set_ylim(lo * (0.9 if positive else 1), hi * 1.05 if math.isfinite(hi) else None)
    for ax in loss_axes:
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("training loss", fontsize=7)
    lr_ax = flat[len(labels)]
    lr = bands.dropna(subset=["lr"])
    if not lr.empty:
        first = lr[lr["label"] == lr["label"].iloc[0]]
        lr_ax.plot(first["iteration"], first["lr"], color="0.2", lw=1.2)
        lr_ax.set_title("learning rate", fontsize=8)
        lr_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}" if v else "0"))
    else:
        lr_ax.set_title("learning rate (not logged)", fontsize=8)
    for ax in flat[: len(labels) + 1]:
        ax.tick_params(labelsize=7, labelbottom=True)
    for ax in flat[-cols:]:
        ax.set_xlabel("iteration", fontsize=7)
    window = int(bands["window"].max()) if not bands.empty else 1
    handles = [Line2D([], [], color="0.3", lw=1.2), Line2D([], [], color="0.3", lw=6, alpha=0.25)]
    names = ["mean over seeds", "min–max over seeds"]
    if not ref.empty:
        handles.append(Line2D([], [], color=GREY, lw=1))
        names.append("bilinear")
    fig.legend(handles, names, loc="outside lower center", ncols=len(handles), fontsize=7, frameon=False)
    smoothing = f"running mean over {window} logged steps" if window > 1 else "not smoothed"
    fig.suptitle(f"Training loss, {title} ({smoothing})", fontsize=9)
    return fig
