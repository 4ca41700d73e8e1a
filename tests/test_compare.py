"""upbench.reporting.compare: paired bootstrap intervals, tie groups, seed agreement, grouping."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from compare_run import noisy, targets, write_cell

from upbench.reporting.compare import RunBootstrap, compare, kendall_tau

N_IMAGES = 12


def _run(tmp_path, seeds=(0,), extra=None):  # noqa: ANN001, ANN202
    """bilinear: 30 % noise; same: bilinear's exact predictions; perfect: the targets;
    slightly: 28 % noise (a difference inside the noise)."""
    run = tmp_path / "run"
    tg = targets(N_IMAGES)
    n = 0
    for seed in seeds:
        base = [noisy(t, 0.3, 1000 * seed + i) for i, t in enumerate(tg)]
        cells = {
            "bilinear": base,
            "same": [p.clone() for p in base],
            "perfect": [t.clone() for t in tg],
            "slightly": [noisy(t, 0.28, 5000 + 1000 * seed + i) for i, t in enumerate(tg)],
        }
        for label, preds in (extra or {}).items():
            cells[label] = preds(seed)
        for label, preds in cells.items():
            n += 1
            write_cell(run, f"c{n:03d}", label, seed, preds, tg)
    return run


def _row(df, label: str, metric: str):  # noqa: ANN001, ANN202
    sub = df[(df["operator"] == label) & (df["metric"] == metric)]
    assert len(sub) == 1
    return sub.iloc[0]


@pytest.mark.parametrize("metric", ["mIoU", "BF", "BIoU"])
def test_identical_predictions_give_zero_and_an_interval_of_zero(tmp_path, metric: str) -> None:
    df = compare(_run(tmp_path), n_boot=200)
    for label in ("same", "bilinear"):
        row = _row(df, label, metric)
        assert (row["diff"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0)
        assert not row["significant"]


@pytest.mark.parametrize("metric", ["mIoU", "BF", "BIoU"])
def test_better_on_every_image_excludes_zero(tmp_path, metric: str) -> None:
    df = compare(_run(tmp_path, seeds=(0, 1)), n_boot=300)
    row = _row(df, "perfect", metric)
    assert row["ci_low"] > 0 and row["significant"]
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    assert row["mean"] == 1.0 and row["n_seeds"] == 2 and row["n_paired"] == 2


def test_columns_and_point_values_follow_the_results_rows(tmp_path) -> None:
    run = _run(tmp_path, seeds=(0, 1))
    df = compare(run, n_boot=50)
    assert {"mean", "std", "n_seeds", "diff", "ci_low", "ci_high", "significant"} <= set(df.columns)
    assert len(df) == 4 * 3  # one setting, 4 operators, 3 metrics
    boot = RunBootstrap(run, n_boot=50)
    sid = df["setting_id"].iloc[0]
    row = _row(df, "slightly", "mIoU")
    seeds = [boot.point(sid, "slightly", s, "mIoU") - boot.point(sid, "bilinear", s, "mIoU") for s in (0, 1)]
    assert row["diff"] == pytest.approx(np.mean(seeds), abs=1e-12)
    values = [boot.point(sid, "slightly", s, "mIoU") for s in (0, 1)]
    assert row["mean"] == pytest.approx(np.mean(values), abs=1e-12)  # rows and per-image counts agree
    assert row["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)


def test_reproducible_with_its_seed(tmp_path) -> None:
    run = _run(tmp_path, seeds=(0, 1))
    a, b = compare(run, n_boot=200, seed=3), compare(run, n_boot=200, seed=3)
    assert a.equals(b)
    c = compare(run, n_boot=200, seed=4)
    slightly = (a["operator"] == "slightly") & (a["metric"] == "mIoU")
    assert not np.allclose(a.loc[slightly, "ci_low"].to_numpy(), c.loc[slightly, "ci_low"].to_numpy())


def test_interval_matches_a_plain_loop_bootstrap(tmp_path) -> None:
    """One seed: the interval is the percentile interval of a per-replicate loop over the draws."""
    run = _run(tmp_path)
    boot = RunBootstrap(run, n_boot=40, seed=0)
    sid = boot.points["setting_id"].iloc[0]
    from upbench.metrics import evaluate

    tg = targets(N_IMAGES)
    preds = {
        "slightly": [noisy(t, 0.28, 5000 + i) for i, t in enumerate(tg)],
        "bilinear": [noisy(t, 0.3, i) for i, t in enumerate(tg)],
    }
    weights = boot._draw_weights(0, 0, N_IMAGES).numpy().astype(int)
    diffs = []
    for w in weights:
        drawn = [i for i in range(N_IMAGES) for _ in range(w[i])]
        a = evaluate([preds["slightly"][i] for i in drawn], [tg[i] for i in drawn], 3)["mIoU"]
        b = evaluate([preds["bilinear"][i] for i in drawn], [tg[i] for i in drawn], 3)["mIoU"]
        diffs.append(a - b)
    d = boot.difference(sid, "slightly", "bilinear", "mIoU")
    assert (d.ci_low, d.ci_high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)


def test_unrelated_cells_are_never_averaged_as_seeds(tmp_path) -> None:
    run = tmp_path / "run"
    tg = targets(4)
    preds = [noisy(t, 0.2, i) for i, t in enumerate(tg)]
    write_cell(run, "a", "bilinear", 0, preds, tg)
    write_cell(run, "b", "bilinear", 0, preds, tg, setting={"train": {"iters": 20}})  # another --set run
    df = compare(run, n_boot=20)
    assert df["setting_id"].nunique() == 2
    assert (df["n_seeds"] == 1).all() and df["std"].isna().all()


def test_tie_group_and_seed_agreement(tmp_path) -> None:
    run = _run(tmp_path, seeds=(0, 1, 2))
    boot = RunBootstrap(run, n_boot=200)
    sid = boot.points["setting_id"].iloc[0]
    assert boot.tie_group(sid, "mIoU") == {"perfect"}  # everything else is significantly worse
    tau, pairs = boot.seed_agreement(sid, "mIoU")
    assert pairs == 3 and -1 <= tau <= 1


def test_a_metric_where_lower_is_better_has_its_lowest_mean_as_best(tmp_path) -> None:
    from upbench.metrics import Metric, Score, register_metric, unregister_metric

    @register_metric("pixel_error_test")
    class PixelError(Metric):
        scores = (Score("pixel_error", higher_is_better=False),)

        def setup(self) -> None:
            self.add_state("pe_wrong")
            self.add_state("pe_labelled")

        def update(self, pred, target):  # noqa: ANN001, ANN202
            labelled = target >= 0
            wrong = (pred != target) & labelled
            return {"pe_wrong": wrong.flatten(1).sum(1), "pe_labelled": labelled.flatten(1).sum(1)}

        def compute(self, state):  # noqa: ANN001, ANN202
            return {"pixel_error": float(state["pe_wrong"] / state["pe_labelled"])}

    try:
        boot = RunBootstrap(_run(tmp_path, seeds=(0, 1, 2)), ("pixel_error",), n_boot=200)
        sid = boot.points["setting_id"].iloc[0]
        assert boot.tie_group(sid, "pixel_error") == {"perfect"}
        assert boot.difference(sid, "bilinear", "perfect", "pixel_error").ci_low > 0
    finally:
        unregister_metric("pixel_error_test")


def test_kendall_tau_equals_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 7).astype(float)
        expected = stats.kendalltau(x, y).statistic
        ours = kendall_tau(x, y)
        assert (math.isnan(ours) and math.isnan(expected)) or ours == pytest.approx(expected, abs=1e-12)


def test_fast_enough_for_a_large_run(tmp_path) -> None:
    """15 operators x 3 seeds x 64 images x 2000 replicates in seconds (vectorised)."""
    run = tmp_path / "run"
    tg = targets(64)
    n = 0
    for seed in range(3):
        for k in range(15):
            n += 1
            write_cell(run, f"c{n:03d}", "bilinear" if k == 0 else f"op{k:02d}", seed, tg, tg)
    t0 = time.perf_counter()
    df = compare(run, n_boot=2000)
    elapsed = time.perf_counter() - t0
    assert len(df) == 15 * 3
    assert elapsed < 30, f"compare took {elapsed:.1f} s"


def test_report_tables_keep_settings_apart_and_name_the_difference(tmp_path) -> None:
    from upbench.reporting import summarise, to_markdown, train_tables

    run = tmp_path / "run"
    tg = targets(4)
    for n, (label, iters) in enumerate([("bilinear", 10), ("resfu", 10), ("bilinear", 20), ("resfu", 20)]):
        preds = [noisy(t, 0.1 * (n + 1), n * 10 + i) for i, t in enumerate(tg)]
        write_cell(run, f"c{n}", label, 0, preds, tg, setting={"train": {"iters": iters}})
    tables = train_tables(summarise(run)["train"], RunBootstrap(run, n_boot=20))
    assert len(tables) == 2
    assert {t.title.split("[")[1] for t in tables} == {"train.iters=10]", "train.iters=20]"}
    assert all(seeds == 1 for t in tables for _, seeds, _ in t.rows)
    text = to_markdown(tables[0])
    assert "No guided_bilinear control in this setting" in text
