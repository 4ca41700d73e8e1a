"""The driver: tidy rows, resume after an interruption, failures recorded, exports."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from tiny_suites import TINY_TRAIN_SUITE

from upbench import driver, results
from upbench.cell import run as cell_run
from upbench.suite import load_suite
from upbench.training.train_log import read_train_log

OPS = """
operators = ["bilinear", "nearest", "deconv"]

[suite]
name = "tiny-ops"
kind = "ops"

[ops]
scales = [2, 4]
sizes = [[1, 8, 4, 4, 8]]
warmup = 0
iters = 2
"""


IDENTITY = ["run", "suite", "cell_id", "kind", "operator", "architecture", "protocol", "scale", "seed", "device"]


@pytest.fixture
def ops_suite(tmp_path):
    p = tmp_path / "ops.toml"
    p.write_text(OPS)
    return load_suite(p)


def test_ops_run_writes_tidy_rows_and_resumes(ops_suite, tmp_path) -> None:
    out = tmp_path / "run"
    summary = driver.run_suite(ops_suite, out_dir=out, device="cpu", progress=False)
    assert summary.total == 6 and summary.ran == 6 and summary.failed == 0
    df = results.read_results(out)
    assert set(IDENTITY + ["metric", "value", "unit", "statistic", "status", "git_commit", "time"]) <= set(df.columns)
    assert set(df["cell_id"]) == {c.cell_id for c in ops_suite.cells()}
    assert {"gmacs", "params", "latency_forward", "cell"} <= set(df["metric"])
    assert df["value"].map(lambda v: v is None or isinstance(v, int | float)).all()  # never strings with units
    assert (out / "results.csv").is_file() and (out / "results.parquet").is_file()
    assert len(pd.read_parquet(out / "results.parquet")) == len(results.read_rows(out))
    assert (out / "suite.toml").is_file() and json.loads((out / "environment.json").read_text())
    again = driver.run_suite(ops_suite, out_dir=out, device="cpu", progress=False)
    assert again.already_done == 6 and again.ran == 0


def test_interrupted_run_completes_only_missing_cells(ops_suite, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    calls = []
    original = cell_run.KINDS["ops"]

    def interrupt_third(config, cell_dir, device, progress):
        calls.append(cell_dir.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(config, cell_dir, device, progress)

    monkeypatch.setitem(cell_run.KINDS, "ops", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        driver.run_suite(ops_suite, out_dir=out, device="cpu", progress=False)
    assert len(results.finished_cells(out)) == 2
    monkeypatch.setitem(cell_run.KINDS, "ops", original)
    summary = driver.run_suite(ops_suite, out_dir=out, device="cpu", progress=False)
    assert summary.already_done == 2 and summary.ran == 4
    assert len(results.finished_cells(out)) == 6


def test_failed_cell_recorded_and_suite_goes_on(ops_suite, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    original = cell_run.KINDS["ops"]

    def fail_deconv(config, cell_dir, device, progress):
        if config["operator"] == "deconv":
            raise RuntimeError("boom")
        return original(config, cell_dir, device, progress)

    monkeypatch.setitem(cell_run.KINDS, "ops", fail_deconv)
    summary = driver.run_suite(ops_suite, out_dir=out, device="cpu", progress=False)
    assert summary.failed == 2 and summary.ran == 6
    df = results.read_results(out)
    failed = df[(df["operator"] == "deconv") & (df["metric"] == "cell")]
    assert set(failed["status"]) == {"failed"} and failed["error"].str.contains("RuntimeError: boom").all()
    cell_id = failed["cell_id"].iloc[0]
    assert "RuntimeError: boom" in (out / "cells" / cell_id / "error.txt").read_text()
    # the next run retries only the failed cells; the latest attempt wins in read_results
    monkeypatch.setitem(cell_run.KINDS, "ops", original)
    summary = driver.run_suite(ops_suite, out_dir=out, device="cpu", progress=False)
    assert summary.ran == 2 and summary.failed == 0
    df = results.read_results(out)
    assert set(df.loc[df["metric"] == "cell", "status"]) == {"ok"}
    assert set(df.loc[df["operator"] == "deconv", "attempt"]) == {2}


def test_oom_is_a_status(ops_suite, tmp_path, monkeypatch) -> None:
    import torch

    def oom(config, cell_dir, device, progress):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setitem(cell_run.KINDS, "ops", oom)
    summary = driver.run_suite(ops_suite, out_dir=tmp_path / "run", device="cpu", progress=False)
    df = results.read_results(tmp_path / "run")
    assert summary.failed == 6 and set(df["status"]) == {"oom"}


def test_truncated_last_line_is_skipped(ops_suite, tmp_path) -> None:
    out = tmp_path / "run"
    driver.run_suite(load_suite_only(ops_suite, "operator=bilinear"), out_dir=out, device="cpu", progress=False)
    with open(out / "results.jsonl", "a") as fh:
        fh.write('{"cell_id": "abc", "metr')
    with pytest.warns(RuntimeWarning, match="truncated"):
        assert len(results.finished_cells(out)) == 2


def load_suite_only(suite, *filters):
    suite.only = list(filters)
    return suite


def test_cuda_request_without_cuda_is_a_clear_error(ops_suite, tmp_path) -> None:
    import torch

    from upbench.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="no CUDA device"):
        driver.run_suite(ops_suite, out_dir=tmp_path, device="cuda")


def test_train_cells_end_to_end(tmp_path) -> None:
    p = tmp_path / "train.toml"
    p.write_text(TINY_TRAIN_SUITE)
    out = tmp_path / "run"
    summary = driver.run_suite(load_suite(p), out_dir=out, device="cpu", progress=False)
    assert summary.failed == 0, summary.describe()
    df = results.read_results(out)
    assert {"mIoU", "BF", "BIoU", "aAcc", "params", "gmacs", "train_time"} <= set(df["metric"])
    miou = df[df["metric"] == "mIoU"]
    assert len(miou) == 4 and miou["value"].between(0, 1).all()
    for cell_id in set(df["cell_id"]):
        assert (out / "cells" / cell_id / "model.pt").is_file()
        curve = read_train_log(out / "cells" / cell_id / "train_log.csv")  # the learning curve, every step
        assert curve["iteration"].tolist() == [1, 2] and curve["loss"].gt(0).all() and curve["lr"].gt(0).all()
        final = df[(df["cell_id"] == cell_id) & (df["metric"] == "final_loss")]["value"].item()
        assert curve["loss"].iloc[-1] == pytest.approx(final, rel=1e-12)
    change = df[df["metric"] == "operator_weight_change"]
    assert sorted(change["operator"]) == ["resfu", "resfu"] and (change["value"] > 0).all()  # bilinear: no params
    _check_per_image_and_operator_costs(out, df)


def _check_per_image_and_operator_costs(out, df) -> None:  # noqa: ANN001
    """Per-image counts recompute the mIoU/BF/BIoU rows; op. params include the guided stem."""
    from upbench.metrics.per_image import FILE_NAME, frame_to_arrays, read_per_image, scores_from_counts

    value = {(r.cell_id, r.metric): r.value for r in df[df["statistic"].isin(["value", "median"])].itertuples()}
    for cell_id in set(df["cell_id"]):
        frame = read_per_image(out / "cells" / cell_id / FILE_NAME)
        assert sorted(frame["image"].unique()) == [0, 1]  # the tiny suite's 2 validation images
        again = scores_from_counts(frame_to_arrays(frame))
        for metric in ("mIoU", "BF", "BIoU"):
            assert float(again[metric][0]) == pytest.approx(value[(cell_id, metric)], abs=1e-12, rel=0)
        assert value[(cell_id, "BF_tolerance_px")] == 1.0  # 32 px images: 0.34 px floored to 1 px
    cells = df.drop_duplicates("cell_id").set_index(["architecture", "operator"])["cell_id"]
    for arch in ("plain", "hierarchical"):
        op, ref = cells[(arch, "resfu")], cells[(arch, "bilinear")]
        # every parameter the guided model has beyond bilinear's is attributed to the operator
        extra = value[(op, "params")] - value[(ref, "params")]
        assert extra == value[(op, "operator_params")] - value[(ref, "operator_params")]
    plain_op = cells[("plain", "resfu")]
    assert value[(plain_op, "operator_params")] > 20_000  # ReSFU (~10 K) + the image stem (~20 K)
