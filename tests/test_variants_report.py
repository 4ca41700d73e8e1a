"""Variants against their operator, with the mosaic index recomputed from the saved models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from upbench import driver
from upbench.reporting import write_report
from upbench.reporting.compare import RunBootstrap
from upbench.reporting.mosaic import index_from_sums, mosaic_index, per_image_block_sums
from upbench.reporting.qualitative import load_cell_model, load_val_set
from upbench.reporting.variants import variant_analysis, variant_pairs, variant_table
from upbench.suite import load_suite

SUITE = """
operators = ["resfu", "bilinear"]
seeds = [0, 1]

[[variants]]
name = "resfu-coarse"
operator = "resfu"
options = { neighbours = "coarse" }

[suite]
name = "tiny-variants"
kind = "train"

[dataset]
name = "contextual"
train = { size = 32, count = 8 }
val = { size = 32, count = 6 }

[[architectures]]
name = "plain"
preset = "tiny"
scales = [4]

[train]
iters = 3
batch_size = 2

[profile]
enabled = false
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("variants")
    (tmp / "v.toml").write_text(SUITE)
    summary = driver.run_suite(load_suite(tmp / "v.toml"), out_dir=tmp / "run", device="cpu", progress=False)
    assert summary.failed == 0
    return tmp / "run"


def test_block_sums_give_the_mosaic_index_of_any_set_of_maps() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(5, 3, 20, 20, generator=gen)
    maps[2] = torch.nn.functional.interpolate(torch.randn(1, 3, 5, 5, generator=gen), scale_factor=4)[0]  # blocks
    sums = per_image_block_sums(maps, 4)
    for i in range(5):
        assert float(index_from_sums(sums[i, 0], sums[i, 1])) == pytest.approx(mosaic_index(maps[i], 4), abs=1e-12)
    assert float(index_from_sums(sums[2, 0], sums[2, 1])) == pytest.approx(1.0, abs=1e-12)
    drawn = [0, 2, 2, 4]
    total = sums[drawn].sum(0)
    assert float(index_from_sums(total[0], total[1])) == pytest.approx(mosaic_index(maps[drawn], 4), abs=1e-12)
    assert float(index_from_sums(torch.tensor(0.0), torch.tensor(0.0))) == 0.0


def _features(run_dir, cell_id: str) -> torch.Tensor:  # noqa: ANN001
    """The upsampled feature of a cell's saved model on its validation images, computed here."""
    import json

    config = json.loads((run_dir / "cells" / cell_id / "config.json").read_text())
    val, num_classes, _ = load_val_set(config)
    model = load_cell_model(config, num_classes)
    model.load_state_dict(torch.load(run_dir / "cells" / cell_id / "model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        return model(torch.stack([val[i][0] for i in range(len(val))]), return_features=True)[1]["upsampled"]


@pytest.mark.slow  # trains 6 tiny cells
def test_mosaic_index_of_a_cell_is_its_model_on_every_validation_image(run) -> None:
    boot = RunBootstrap(run, ("mIoU", "mosaic_index"), n_boot=50)
    (sid,) = boot.settings
    for label in ("resfu", "resfu-coarse", "bilinear"):
        for seed in (0, 1):
            expected = mosaic_index(_features(run, boot.cells[(sid, label, seed)]), 4)
            assert boot.point(sid, label, seed, "mosaic_index") == pytest.approx(expected, abs=1e-9)
    assert abs(boot.point(sid, "bilinear", 0, "mosaic_index")) < 1e-6  # bilinear x4: none (float32)
    same = boot.difference(sid, "resfu", "resfu", "mosaic_index")
    assert (same.diff, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


@pytest.mark.slow  # trains 6 tiny cells
def test_mosaic_interval_matches_a_plain_loop_over_the_same_draws(run) -> None:
    boot = RunBootstrap(run, ("mosaic_index",), n_boot=30, seed=1)
    (sid,) = boot.settings
    one_seed = RunBootstrap(run, ("mosaic_index",), n_boot=30, seed=1)
    one_seed.cells = {k: v for k, v in boot.cells.items() if k[2] == 0}  # seed 0 only: the plain image bootstrap
    fine = _features(run, boot.cells[(sid, "resfu", 0)])
    coarse = _features(run, boot.cells[(sid, "resfu-coarse", 0)])
    diffs = []
    for w in one_seed._draw_weights(0, 0, fine.shape[0]).numpy().astype(int):
        drawn = [i for i in range(fine.shape[0]) for _ in range(w[i])]
        diffs.append(mosaic_index(coarse[drawn], 4) - mosaic_index(fine[drawn], 4))
    d = one_seed.difference(sid, "resfu-coarse", "resfu", "mosaic_index")
    assert (d.ci_low, d.ci_high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-9)


@pytest.mark.slow  # trains 6 tiny cells
def test_variant_table_and_report_section(run, tmp_path) -> None:
    analysis = variant_analysis(run)
    assert analysis is not None and "mosaic_index" in analysis.metrics
    (sid,) = analysis.settings
    assert variant_pairs(analysis, sid) == [("resfu-coarse", "resfu")]
    table = variant_table(analysis)
    assert sorted(table["metric"]) == sorted(["mIoU", "BF", "BIoU", "mosaic_index"])
    row = table[table["metric"] == "mIoU"].iloc[0]
    direct = analysis.difference(sid, "resfu-coarse", "resfu", "mIoU")
    assert row["diff"] == direct.diff and row["n_paired"] == 2
    means = [np.mean([analysis.point(sid, lab, s, "mIoU") for s in (0, 1)]) for lab in ("resfu-coarse", "resfu")]
    assert (row["variant_mean"], row["base_mean"]) == pytest.approx(tuple(means), abs=1e-12)
    out = write_report(run, tmp_path / "report", n_images=1)
    text = (out / "report.md").read_text()
    assert "## Variants against their operator" in text and "| resfu-coarse | resfu |" in text
    assert (out / "tables" / "variants.csv").is_file()
