"""Cost estimates of `plan`: published iteration times and a measured probe."""

from __future__ import annotations

import pytest

from upbench.cli import main
from upbench.cost import CPU_DEVICE, MEASURED_CPU_STEP_MS, PUBLISHED_ITER_S, estimate, summary
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
    text = summary(list(costs.values()))
    assert text.startswith("estimated training time (training steps only")
    total = 160000 * (0.857 + 0.603 + 0.715 + 0.682) / 3600
    assert f"1x RTX A6000: 4 cell(s), {total:.1f} h ({total / 24:.1f} days)" in text
    assert "no estimate: 3 of 7 cell(s)" in text


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


def test_cpu_suites_get_cpu_minutes_from_measured_step_times() -> None:
    cells = load_suite("quick").cells()
    costs = estimate(cells)
    assert all(c.hours is not None and c.device == CPU_DEVICE for c in costs)
    resfu = next(c for c, cell in zip(costs, cells) if cell.config["operator"] == "resfu")
    # 160 iterations of batch 4: half the measured batch-8 step of 74.7 ms at x4
    assert resfu.seconds_per_iter == pytest.approx(MEASURED_CPU_STEP_MS["resfu"][4] / 1000 * 4 / 8)
    assert resfu.hours == pytest.approx(160 * resfu.seconds_per_iter / 3600)
    assert "scaled from batch 8 to 4" in resfu.source
    total = sum(c.hours for c in costs) * 60
    assert f"CPU, 2 cores: 38 cell(s), {total:.1f} min" in summary(costs)
    # x16 of an operator never measured at x16: no estimate, nothing made up
    ratio = load_suite("ratio-cpu", only=["operator=carafe", "scale=16"]).cells()
    assert all(c.hours is None for c in estimate(ratio))


def test_plan_without_the_dataset_shows_cells_costs_and_the_problem(capsys) -> None:
    assert main(["plan", "paper_segformer_b1_cascade"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "suite 'paper_segformer_b1_cascade': 7 cell(s)"
    assert sum(" hierarchical " in li for li in lines) == 7
    total = 160000 * (0.857 + 0.603 + 0.715 + 0.682) / 3600
    assert f"4 cell(s), {total:.1f} h" in out and "no estimate: 3 of 7 cell(s)" in out
    problems = out.split("problems that would stop `run` (1):")[1]
    assert "dataset.root is missing: dataset 'ade20k' needs its folder" in problems
    assert max(len(li) for li in lines) <= 100
