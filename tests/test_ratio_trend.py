"""upbench.reporting.ratio: the gap at each ratio and its change between ratios, paired."""

from __future__ import annotations

import numpy as np
import pytest
from compare_run import noisy, targets, write_cell

from upbench.metrics import evaluate
from upbench.reporting.compare import RunBootstrap
from upbench.reporting.ratio import ratio_section, ratio_trend, scale_families

N_IMAGES = 10


def _run(tmp_path, seeds=(0, 1), resfu_rate=None):  # noqa: ANN001, ANN202
    """bilinear: 30 % noise at both ratios; resfu: ``resfu_rate[scale]`` noise; same: bilinear's
    predictions. A third setting (other training length) must stay out of the ratio family."""
    resfu_rate = resfu_rate or {4: 0.28, 16: 0.0}
    run = tmp_path / "run"
    tg = targets(N_IMAGES)
    n = 0
    for scale, extra in ((4, {}), (16, {}), (16, {"train": {"iters": 20}})):
        for seed in seeds:
            base = [noisy(t, 0.3, 1000 * seed + i) for i, t in enumerate(tg)]
            resfu = [noisy(t, resfu_rate[scale], 7000 + 1000 * seed + i) for i, t in enumerate(tg)]
            for label, preds in (("bilinear", base), ("same", [p.clone() for p in base]), ("resfu", resfu)):
                n += 1
                write_cell(run, f"c{n:03d}", label, seed, preds, tg, setting={"scale": scale, **extra})
    return run


def _get(df, label, metric, kind, scale):  # noqa: ANN001, ANN202
    sub = df[(df["operator"] == label) & (df["metric"] == metric) & (df["kind"] == kind) & (df["scale"] == scale)]
    assert len(sub) == 1
    return sub.iloc[0]


def test_families_are_settings_that_differ_only_in_scale(tmp_path) -> None:
    boot = RunBootstrap(_run(tmp_path), n_boot=20)
    (family,) = scale_families(boot)
    assert list(family) == [4, 16]
    assert all(boot.settings[sid].get("train") == {"iters": 10} for sid in family.values())


def test_change_is_the_gap_at_the_high_ratio_minus_the_gap_at_the_low_one(tmp_path) -> None:
    boot = RunBootstrap(_run(tmp_path), n_boot=300)
    df = ratio_trend(boot, "bilinear")
    fam = scale_families(boot)[0]
    for metric in ("mIoU", "BF", "BIoU"):
        change = _get(df, "resfu", metric, "change", 16)
        hi = boot.difference(fam[16], "resfu", "bilinear", metric).diff
        lo = boot.difference(fam[4], "resfu", "bilinear", metric).diff
        assert change["diff"] == pytest.approx(hi - lo, abs=1e-12)
        assert change["scale_from"] == 4 and change["n_paired"] == 2
        assert change["ci_low"] > 0 and change["significant"]  # perfect at x16, nearly bilinear at x4
        gap = _get(df, "resfu", metric, "gap", 16)
        assert gap["diff"] == pytest.approx(hi, abs=1e-12)


def test_a_gap_that_does_not_change_gives_exactly_zero(tmp_path) -> None:
    df = ratio_trend(RunBootstrap(_run(tmp_path), n_boot=100), "bilinear")
    for metric in ("mIoU", "BF", "BIoU"):
        row = _get(df, "same", metric, "change", 16)
        assert (row["diff"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0) and not row["significant"]


def test_change_interval_matches_a_plain_loop_over_the_same_draws(tmp_path) -> None:
    """One seed: each replicate draws one image resample and scores both ratios on it."""
    rates = {4: 0.25, 16: 0.2}
    boot = RunBootstrap(_run(tmp_path, seeds=(0,), resfu_rate=rates), n_boot=40, seed=0)
    fam = scale_families(boot)[0]
    tg = targets(N_IMAGES)
    bil = [noisy(t, 0.3, i) for i, t in enumerate(tg)]
    resfu = {s: [noisy(t, rates[s], 7000 + i) for i, t in enumerate(tg)] for s in (4, 16)}
    changes = []
    for w in boot._draw_weights(0, 0, N_IMAGES).numpy().astype(int):
        drawn = [i for i in range(N_IMAGES) for _ in range(w[i])]
        truth = [tg[i] for i in drawn]
        base = evaluate([bil[i] for i in drawn], truth, 3)["mIoU"]
        gap = {s: evaluate([resfu[s][i] for i in drawn], truth, 3)["mIoU"] - base for s in (4, 16)}
        changes.append(gap[16] - gap[4])
    d = boot.interaction(fam[16], fam[4], "resfu", "bilinear", "mIoU")
    assert (d.ci_low, d.ci_high) == pytest.approx(tuple(np.percentile(changes, [2.5, 97.5])), abs=1e-12)


def test_report_section_names_both_ratios_and_marks_the_change(tmp_path) -> None:
    lines = ratio_section(RunBootstrap(_run(tmp_path), n_boot=200))
    text = "\n".join(lines)
    assert "## Does the gap change with the ratio?" in text
    assert "| operator | metric | gap x4 | gap x16 |" in text and "| operator | metric | x16 − x4 |" in text
    change = text.split("change of the gap from x4")[1].splitlines()
    (resfu_miou,) = [line for line in change if line.startswith("| resfu | mIoU |")]
    assert resfu_miou.rstrip(" |").endswith("*")
    (same_miou,) = [line for line in change if line.startswith("| same | mIoU |")]
    assert "+0.0 [+0.0, +0.0] |" in same_miou and "*" not in same_miou
    assert max(len(line) for line in lines if line.startswith("|")) < 120
    assert ratio_section(None) == []
