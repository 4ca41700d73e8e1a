"""Cost estimates of `plan`: published iteration times and a measured probe."""

from __future__ import annotations

import pytest

from upbench.cli import main
from upbench.cost import PUBLISHED_ITER_S, estimate, summary
from upbench.suite import load_suite

pytestmark = pytest.mark.usefixtures("one_thread")


def test_published_iteration_times_give_hours() -> None:
    cells = load_suite("paper_segformer_b1_cascade").cells()
    costs = {c.cell_id: c for c in estimate(cells)}
    fade = next(c for c in cells if c.config["operator"] == "fade")
    # poppinace/fade@e4de4db segformer.b1_fade log: median time 0.715 s/iter, 160000 iterations
    assert PUBLISHED_ITER_S[("hierarchical", "b1", "cascade", "fade", 16, 512)][0] == 0.715
    assert costs[fade.cell_id].hours == pytest.approx(160000 * 0.715 / 3600)
    assert "segformer.b1_fade.512x512.ade.160k.log" in costs[fade.cell_id].source
    sapa = next(c for c in cells if c.config["operator"] == "sapa")
    assert costs[sapa.cell_id].hours is None  # not logged: no number is made up
    line = summary(list(costs.values()))
    assert line.startswith("estimated training compute: >= ") and "3 of 7 cell(s) have no estimate" in line


def test_other_settings_get_no_published_estimate() -> None:
    # the same operator at another batch size was not logged
    cells = load_suite("paper_segformer_b1_cascade", overrides=["train.batch_size=8"]).cells()
    assert all(c.hours is None for c in estimate(cells))


def test_probe_measures_each_setting_once(capsys) -> None:
    cells = load_suite("quick", overrides=["seeds=[0, 1]", "train.iters=3600"], only=["operator=bilinear", "scale=4"])
    cells = cells.cells()
    assert len(cells) == 2
    costs = estimate(cells, probe=True, device="cpu", probe_iters=1)
    assert costs[0].seconds_per_iter == costs[1].seconds_per_iter > 0  # one probe for both seeds
    assert costs[0].hours == pytest.approx(costs[0].seconds_per_iter)  # 3600 iterations
    assert costs[0].source.startswith("probe: 1 steps on CPU")


def test_plan_prints_the_estimate(capsys, ade) -> None:
    assert main(["plan", "paper_segformer_b1_cascade", "--set", f"dataset.root={ade}"]) == 0
    out = capsys.readouterr().out
    total = 160000 * (0.857 + 0.603 + 0.715 + 0.682) / 3600
    assert "s/iter" in out and f">= {total:.2f} device-hours" in out
