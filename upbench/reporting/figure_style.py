"""The look shared by every report figure: rc style, family colours and markers (one per operator,
the same in every figure), figure creation and saving (deterministic PNG and SVG), direct labels
that do not collide (:func:`place_labels`) and log axes where values span more than a decade.
The figures themselves are in :mod:`upbench.reporting.figures`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

STYLE = {
    "svg.hashsalt": "upbench",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
DPI = 120
REFERENCE = "bilinear"
CONTROL = "guided_bilinear"
#: Colour of each family (the reference and the control are families of their own).
FAMILY_COLOURS = {
    "reference": "#222222",
    "control": "#2ca02c",
    "segmentation": "#1f77b4",
    "task-agnostic": "#d62728",
}
FAMILY_NAMES = {
    "reference": "bilinear (reference)",
    "control": "guided_bilinear (guide control)",
    "segmentation": "segmentation line",
    "task-agnostic": "task-agnostic family",
}
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h", "<", ">", "p", "*", "d", "8", "H")
#: More operators than this in one panel are drawn as small multiples.
CROWDED = 6
GREY = "#c8c8c8"


class FigureSkipped(Exception):
    """A figure that cannot be drawn from the results at hand; ``str()`` is the reason."""


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` without dates or software versions; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    with matplotlib.rc_context(STYLE):
        fig.savefig(paths[0], dpi=DPI, metadata={"Software": None})
        fig.savefig(paths[1], metadata={"Date": None, "Creator": None})
    return paths


def _new_figure(ncols: int, nrows: int = 1, size: tuple[float, float] = (4.0, 3.2), **kw) -> tuple[Figure, np.ndarray]:  # noqa: ANN003
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _grid(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(n, max_cols)
    return cols, math.ceil(n / cols)


# --------------------------------------------------------------------------- operator styles
def operator_family(operator: object) -> str:
    """The registry family of ``operator`` (``"segmentation"`` for names the registry does not know)."""
    from upbench.errors import UnknownOperatorError
    from upbench.registry import operator_info

    try:
        return operator_info(str(operator)).family
    except UnknownOperatorError:
        return "segmentation"


def label_family(label: str, operator: object = None) -> str:
    """``reference`` (bilinear), ``control`` (guided_bilinear), else the operator's registry family."""
    if label == REFERENCE:
        return "reference"
    if label == CONTROL:
        return "control"
    return operator_family(operator if operator is not None and not pd.isna(operator) else label)


def operator_styles(frame: pd.DataFrame) -> dict[str, dict[str, str]]:
    """``label -> {"color", "marker", "family"}`` for the labels of ``frame`` (with an optional
    ``operator`` column): colour by family, a distinct marker per label within its family, the same
    for a label in every figure of a report drawn from the same labels."""
    ops = dict(zip(frame["label"], frame["operator"])) if "operator" in frame else {}
    families: dict[str, list[str]] = {}
    for label in sorted(set(frame["label"])):
        families.setdefault(label_family(label, ops.get(label)), []).append(label)
    styles = {}
    for family, labels in families.items():
        for i, label in enumerate(labels):
            styles[label] = {"color": FAMILY_COLOURS[family], "marker": MARKERS[i % len(MARKERS)], "family": family}
    return styles


def _family_legend(fig: Figure, styles: dict[str, dict[str, str]], extra: list[tuple[object, str]] = ()) -> None:  # noqa: B006
    families = [f for f in FAMILY_COLOURS if any(s["family"] == f for s in styles.values())]
    handles = [Line2D([], [], color=FAMILY_COLOURS[f], marker="o", ls="", label=FAMILY_NAMES[f]) for f in families]
    handles += [h for h, _ in extra]
    labels = [FAMILY_NAMES[f] for f in families] + [name for _, name in extra]
    if handles:
        ncols = min(len(handles), max(2, int(fig.get_figwidth() // 2.2)))
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=7, frameon=False)


# --------------------------------------------------------------------------- label placement
def place_labels(
    ax,  # noqa: ANN001
    xs: np.ndarray,
    ys: np.ndarray,
    labels: list[str],
    colours: list[str] | None = None,
    fontsize: float = 7,
) -> list:
    """Direct labels next to the points ``(xs, ys)`` that overlap neither each other nor the points.

    Greedy and deterministic: the figure's layout is computed and frozen first; then, in order of
    how crowded their neighbourhood is, each label takes the nearest free spot among candidates on
    rings around its point (in points, so the result does not depend on the DPI), inside the axes
    where possible; a label placed away from its point gets a thin leader line. Returns the
    annotation artists."""
    fig = ax.figure
    fig.draw_without_rendering()
    fig.set_layout_engine("none")  # positions stay as measured
    renderer = fig.canvas.get_renderer()
    scale = 72.0 / fig.dpi  # display px -> points
    pts = ax.transData.transform(np.column_stack([xs, ys])) * scale
    frame = ax.get_window_extent(renderer)
    box = np.array([frame.x0, frame.y0, frame.x1, frame.y1]) * scale
    sizes = []
    for label in labels:
        text = ax.text(0, 0, label, fontsize=fontsize)
        extent = text.get_window_extent(renderer)
        sizes.append((extent.width * scale, extent.height * scale))
        text.remove()
    obstacles = [(x - 3.5, y - 3.5, x + 3.5, y + 3.5) for x, y in pts]
    order = sorted(range(len(labels)), key=lambda i: (-int(np.sum(np.hypot(*(pts - pts[i]).T) < 30)), i))
    placed: list[tuple[float, float, float, float]] = []
    artists = []
    rings = (5.0, 11.0, 18.0, 26.0, 36.0, 48.0, 62.0)
    angles = np.deg2rad([20, -20, 160, 200, 90, 270, 55, -55, 125, 235, 0, 180])
    for i in order:
        (x, y), (w, h) = pts[i], sizes[i]
        best, best_cost = None, math.inf
        for r in rings:
            for a in angles:
                cx, cy = x + r * math.cos(a), y + r * math.sin(a)
                # anchor the text box on the side facing away from the point
                x0 = cx if math.cos(a) > 0.3 else cx - w if math.cos(a) < -0.3 else cx - w / 2
                y0 = cy if math.sin(a) > 0.3 else cy - h if math.sin(a) < -0.3 else cy - h / 2
                rect = (x0, y0, x0 + w, y0 + h)
                overlap = sum(_overlap(rect, o) for o in placed) + sum(_overlap(rect, o) for o in obstacles)
                outside = (max(0.0, box[0] - rect[0]) + max(0.0, rect[2] - box[2]) + max(0.0, box[1] - rect[1])) + max(
                    0.0, rect[3] - box[3]
                )
                cost = overlap * 10 + outside * 40 + r
                if cost < best_cost:
                    best, best_cost = rect, cost
            if best is not None and best_cost <= r + 1e-9:  # a free spot on this ring
                break
        placed.append(best)
        dx, dy = best[0] - x, best[1] - y
        far = math.hypot(best[0] + w / 2 - x, best[1] + h / 2 - y) > 14
        artists.append(
            ax.annotate(
                labels[i],
                (xs[i], ys[i]),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=fontsize,
                ha="left",
                va="bottom",
                color=colours[i] if colours else "black",
                annotation_clip=False,
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5, "shrinkA": 0, "shrinkB": 3} if far else None,
            )
        )
    return artists


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def _log_if_spread(ax, values: pd.Series, axis: str = "x") -> bool:  # noqa: ANN001
    """A log axis where the positive values span more than a decade; returns whether it is log."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if len(v) and (v > 0).all() and v.max() / v.min() > 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        _plain_log_ticks(ax.xaxis if axis == "x" else ax.yaxis)
        return True
    return False


def _plain_log_ticks(axis) -> None:  # noqa: ANN001
    """Log-axis ticks at 1, 2 and 5 times powers of ten, written as plain numbers (0.05, not 5x10^-2)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
