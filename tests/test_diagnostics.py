"""Learning diagnostics of a train cell: relative weight change and the late loss trend."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from upbench.training.diagnostics import loss_trend, relative_weight_change, snapshot


def test_weight_change_is_the_relative_l2_norm_over_all_parameters() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Conv2d(2, 2, 1)
    before = snapshot([a, b])
    with torch.no_grad():
        a.weight.add_(0.5)
    flat_before = torch.cat([t.flatten() for t in before])
    expected = math.sqrt(0.25 * a.weight.numel()) / float(flat_before.norm())
    assert relative_weight_change(before, [a, b]) == pytest.approx(expected, rel=1e-6)  # float32 rounding of +0.5
    assert relative_weight_change(snapshot([b]), [b]) == 0.0


def test_weight_change_of_a_parameter_free_operator_is_none() -> None:
    assert relative_weight_change(snapshot([nn.Upsample(scale_factor=2)]), [nn.Upsample(scale_factor=2)]) is None


def test_loss_trend_fits_the_last_tenth() -> None:
    flat = [(i, 1.0 + (5.0 if i <= 90 else 0.0)) for i in range(1, 101)]  # early drop, flat last 10 %
    assert loss_trend(flat) == pytest.approx(0.0, abs=1e-12)
    falling = [(i, 2.0 - 0.01 * i) for i in range(1, 101)]  # straight line: -0.01 per iteration
    window = [2.0 - 0.01 * i for i in range(91, 101)]
    assert loss_trend(falling) == pytest.approx(-0.01 * 9 / (sum(window) / len(window)), rel=1e-12)
    assert loss_trend([(1, 1.0), (2, 0.5)]) is None  # too few points in the window


def test_learning_section_flags_still_and_falling_operators() -> None:
    import pandas as pd

    from upbench.reporting.learning import learning_section

    rows = []
    for label, change, trend in (("carafe", 0.2, -0.01), ("resfu", 1e-5, -0.2), ("bilinear", None, 0.0)):
        base = {
            "architecture": "plain",
            "protocol": "direct",
            "scale": 16,
            "setting_id": "abcdef123456",
            "label": label,
        }
        if change is not None:
            rows.append({**base, "metric": "operator_weight_change", "mean": change})
        rows.append({**base, "metric": "loss_trend_last10", "mean": trend})
    lines = learning_section(pd.DataFrame(rows))
    table = {line.split("|")[5].strip(): line for line in lines if line.startswith("| plain")}
    assert table["resfu"].rstrip(" |").endswith("barely moved, still falling")
    assert "barely" not in table["carafe"] and "falling" not in table["carafe"]
    assert "| — |" in table["bilinear"]
    assert learning_section(pd.DataFrame(columns=["metric", "mean"])) == []
