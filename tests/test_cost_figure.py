"""Cost-vs-size figure: log-log curves per operator and channel count, out-of-memory cells as crosses."""

from __future__ import annotations

import pandas as pd
import pytest

from upbench.reporting.figures import FigureSkipped, ops_size_figure


def _ops() -> pd.DataFrame:
    rows = []
    for label, factor in (("bilinear", 1.0), ("naf", 30.0)):
        for c in (64, 256):
            for lr, scale in ((8, 2), (8, 4), (16, 4)):
                pixels = (lr * scale) ** 2
                for metric in ("gmacs", "latency_forward"):
                    value = factor * c * pixels * (1e-9 if metric == "gmacs" else 1e-4)
                    rows.append(
                        {"label": label, "metric": metric, "mean": value, "in_channels": c, "lr_height": lr,
                         "lr_width": lr, "scale": scale}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def test_curves_per_channel_count_and_oom_crosses() -> None:
    oom = pd.DataFrame(
        [{"kind": "ops", "status": "oom", "cell_id": "c1", "label": "naf", "in_channels": 256, "lr_height": 32,
          "lr_width": 32, "scale": 16, "metric": "latency_forward"}]
    )  # fmt: skip
    fig = ops_size_figure(_ops(), oom)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"bilinear", "naf"}  # small multiples: one panel per operator
    naf = panels["naf"]
    assert naf.get_xscale() == "log" and naf.get_yscale() == "log"
    assert fig.get_suptitle().startswith("forward latency (ms) against output size")
    coloured = [line for line in naf.get_lines() if line.get_marker() == "o"]  # its own curves, one per channel count
    assert len(coloured) == 2 and all(list(line.get_xdata()) == [256, 1024, 4096] for line in coloured)
    # the 256-channel curve at 1024 output pixels: the formula of _ops
    expected = 30.0 * 256 * 1024 * 1e-4
    assert any(line.get_ydata()[1] == pytest.approx(expected) for line in coloured)
    crosses = [line for line in naf.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [512 * 512]
    assert not [line for line in panels["bilinear"].get_lines() if line.get_marker() == "x"]


def test_no_cost_rows_skips_with_a_reason() -> None:
    with pytest.raises(FigureSkipped, match="run an ops suite"):
        ops_size_figure(pd.DataFrame(columns=["metric"]))


def test_families_told_apart_by_colour() -> None:
    from upbench.reporting.figures import FAMILY_COLOURS

    ops = _ops()
    fig = ops_size_figure(ops.assign(operator=ops["label"]))
    titles = {ax.get_title(): ax.title.get_color() for ax in fig.axes if ax.get_visible()}
    assert titles == {"bilinear": FAMILY_COLOURS["reference"], "naf": FAMILY_COLOURS["task-agnostic"]}


def test_every_operator_has_a_family() -> None:
    import upbench

    families = {name: upbench.operator_info(name).family for name in upbench.list_operators()}
    assert {families[n] for n in ("featup_jbu", "jafar", "loftup", "anyup", "naf")} == {"task-agnostic"}
    assert families["resfu"] == families["carafe"] == families["guided_bilinear"] == "segmentation"

    class Unfamiliar(upbench.Upsampler):
        def upsample(self, x, guide):  # noqa: ANN001, ANN202
            return x

    with pytest.raises(ValueError, match="family must be one of"):
        upbench.register_operator("bad_family", title="x", guided=False, family="vision")(Unfamiliar)
    assert "bad_family" not in upbench.list_operators()
