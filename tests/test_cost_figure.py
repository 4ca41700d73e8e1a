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
    axes = fig.axes
    assert len(axes) == 4  # 2 metrics x 2 channel counts
    top_right = axes[3]  # latency, 256 channels
    assert top_right.get_xscale() == "log" and top_right.get_yscale() == "log"
    lines = {line.get_label(): line for line in top_right.get_lines()}
    assert list(lines["naf"].get_xdata()) == [256, 1024, 4096]
    crosses = [line for line in top_right.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [512 * 512]


def test_no_cost_rows_skips_with_a_reason() -> None:
    with pytest.raises(FigureSkipped, match="run an ops suite"):
        ops_size_figure(pd.DataFrame(columns=["metric"]))


def test_families_drawn_together_and_told_apart() -> None:
    ops = _ops()
    fig = ops_size_figure(ops.assign(operator=ops["label"]))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines["naf"].get_linestyle() == "--" and lines["bilinear"].get_linestyle() == "-"
    assert fig.legends[0].get_title().get_text() == "solid: segmentation\ndashed: task-agnostic"


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
