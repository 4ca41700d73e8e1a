"""One cell's trouble stays in that cell: a failed profile keeps the accuracy, a broken cell file is
moved aside and only its cell runs again, a checkpoint is resumed only by the cell that wrote it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from synthetic_run import write_synthetic_run
from tiny_suites import TINY_TRAIN_SUITE, tiny_ops_suite

from upbench import driver, results
from upbench.reporting import write_report
from upbench.suite import load_suite

OPS = tiny_ops_suite("isolated-ops", '["bilinear", "nearest"]')


def _messages(caught) -> str:  # noqa: ANN001
    return " | ".join(str(w.message) for w in caught)


# --------------------------------------------------------------------------- a profile that fails
def test_failed_profile_keeps_the_accuracy_and_the_rerun_only_profiles(tmp_path, monkeypatch) -> None:
    import upbench.cell.profile as cell_profile
    import upbench.training as training

    p = tmp_path / "t.toml"
    p.write_text(TINY_TRAIN_SUITE)
    suite = load_suite(p, only=["operator=bilinear", "architecture=plain"])
    out = tmp_path / "run"
    real_profile = cell_profile.profile_model

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(cell_profile, "profile_model", oom)
    summary = driver.run_suite(suite, out_dir=out, device="cpu", progress=False)
    assert summary.failed == 1
    df = results.read_results(out)
    (cell_id,) = set(df["cell_id"])
    cell_dir = out / "cells" / cell_id
    assert "profiling failed, accuracy kept" in (cell_dir / "error.txt").read_text()  # where the summary points
    by_metric = df.set_index("metric")
    assert by_metric.loc["mIoU", "status"] == "ok" and 0 <= by_metric.loc["mIoU", "value"] <= 1
    assert by_metric.loc["profile", "status"] == "oom" and "OutOfMemoryError" in by_metric.loc["profile", "error"]
    assert by_metric.loc["cell", "status"] == "oom"
    assert "gmacs" not in by_metric.index
    assert results.finished_cells(out) == {cell_id: "oom"}  # not ok: the next run takes it up
    assert (cell_dir / "model.pt").is_file() and (cell_dir / "per_image.parquet").is_file()
    miou = by_metric.loc["mIoU", "value"]

    report = write_report(out, tmp_path / "report")
    summary_csv = (report / "tables" / "train_summary.csv").read_text()
    assert "mIoU" in summary_csv  # the report shows the accuracy
    text = (report / "report.md").read_text()
    assert f"`{cell_id}`" in text.split("## Failed cells")[1] and "profiling failed, accuracy kept" in text

    # the rerun loads model.pt and profiles it: no training, no evaluation
    monkeypatch.setattr(cell_profile, "profile_model", real_profile)

    def never(*args, **kwargs):
        raise AssertionError("the rerun of a cell whose profile failed must not train or evaluate")

    monkeypatch.setattr(training, "train", never)
    monkeypatch.setattr(training, "evaluate", never)
    summary = driver.run_suite(suite, out_dir=out, device="cpu", progress=False)
    assert summary.ran == 1 and summary.failed == 0, summary.describe()
    df = results.read_results(out).set_index("metric")
    assert df.loc["mIoU", "value"] == miou and df.loc["gmacs", "value"] > 0
    assert "profile" not in df.index and set(df["status"]) == {"ok"} and set(df["attempt"]) == {2}
    assert results.finished_cells(out) == {cell_id: "ok"}
    assert not (cell_dir / "profile_pending.json").exists()
    # the cell's checkpoint names its cell (and the hash of its configuration)
    owner = torch.load(cell_dir / "checkpoints" / "last.pt", weights_only=False)["owner"]
    assert owner["cell_id"] == cell_id and owner["config_sha1"].startswith(cell_id)


# --------------------------------------------------------------------------- broken cell files
@pytest.mark.parametrize("content", ["", '{"cell_id": "x", "metr\n', "foreign"])
def test_a_broken_unmerged_rows_file_stops_only_its_own_cell(tmp_path, content) -> None:
    p = tmp_path / "ops.toml"
    p.write_text(OPS)
    out = tmp_path / "run"
    driver.run_suite(load_suite(p, only=["operator=bilinear"]), out_dir=out, device="cpu", progress=False)
    (done,) = results.finished_cells(out)
    (victim,) = {c.cell_id for c in load_suite(p).cells()} - {done}
    (out / "cells" / victim).mkdir(parents=True)
    rows_file = out / "cells" / victim / results.CELL_ROWS_FILE
    if content == "foreign":  # another cell's rows copied in
        shutil.copyfile(out / "cells" / done / results.CELL_ROWS_FILE, rows_file)
    else:
        rows_file.write_text(content)
    with pytest.warns(RuntimeWarning) as caught:
        summary = driver.run_suite(load_suite(p), out_dir=out, device="cpu", progress=False)
    warned = [w for w in caught if "rows.jsonl" in str(w.message)]
    assert len(warned) == 1 and "moved to rows.jsonl.corrupt-" in str(warned[0].message)
    assert summary.already_done == 1 and summary.ran == 1 and summary.failed == 0
    assert results.finished_cells(out) == {done: "ok", victim: "ok"}
    assert list((out / "cells" / victim).glob("rows.jsonl.corrupt-*"))
    assert set(results.read_results(out).groupby("cell_id")["operator"].first()) == {"bilinear", "nearest"}


def test_junk_per_image_records_are_moved_aside_and_the_cell_needs_a_rerun(tmp_path) -> None:
    out = tmp_path / "run"
    rows = write_synthetic_run(out, ops=False)
    cells = sorted({r["cell_id"] for r in rows})
    results.write_current_cells(out, cells, 2)
    (out / "cells" / "t0002" / "per_image.parquet").write_bytes(b"PAR1 not parquet at all")
    with pytest.warns(RuntimeWarning) as caught:
        report = write_report(out, tmp_path / "report")
    warned = [w for w in caught if "per_image.parquet" in str(w.message)]
    assert len(warned) == 1 and "moved to per_image.parquet.corrupt-" in str(warned[0].message)
    assert results.needs_rerun(out, "t0002") == ["per_image.parquet"]
    section = (report / "report.md").read_text().split("## Cells without results")[1]
    assert "`t0002` bilinear plain direct x4 seed 1: needs rerun: per_image.parquet moved aside" in section


# --------------------------------------------------------------------------- checkpoints
def _train(checkpoints, owner, iters=2):  # noqa: ANN001, ANN202
    from upbench.architectures import build_model
    from upbench.training import TrainConfig, train

    torch.manual_seed(0)
    model = build_model("plain", operator="bilinear", num_classes=3, scale=4)
    data = torch.utils.data.TensorDataset(torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4, 32, 32)))
    cfg = TrainConfig(iters=iters, batch_size=2, warmup_iters=1)
    return train(model, data, cfg, checkpoint_dir=checkpoints, progress=False, owner=owner)


@pytest.mark.parametrize("damage", ["truncated", "another cell's"])
def test_a_checkpoint_that_is_not_this_cells_is_moved_aside_and_training_restarts(tmp_path, damage) -> None:
    mine, theirs = {"cell_id": "aaa", "config_sha1": "aaa1"}, {"cell_id": "bbb", "config_sha1": "bbb1"}
    ckpt = tmp_path / "ckpt"
    assert _train(ckpt, mine).resumed_from == 0
    assert _train(ckpt, mine).resumed_from == 2  # its own checkpoint is resumed
    last = ckpt / "last.pt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    else:
        _train(tmp_path / "other", theirs)
        shutil.copyfile(tmp_path / "other" / "last.pt", last)
    with pytest.warns(RuntimeWarning) as caught:
        result = _train(ckpt, mine)
    message = _messages(caught)
    assert result.resumed_from == 0 and result.iterations == 2
    assert "moved to last.pt.corrupt-" in message and "training starts again from iteration 0" in message
    expected = "unreadable checkpoint" if damage == "truncated" else "checkpoint of cell_id bbb"
    assert expected in message
    assert len(list(ckpt.glob("last.pt.corrupt-*"))) == 1
    assert torch.load(last, weights_only=False)["owner"] == mine  # written again by its own cell


def test_a_broken_pending_profile_file_makes_the_cell_run_whole(tmp_path) -> None:
    from upbench.cell.train import PENDING_FILE, _pending_rows

    cell_dir = tmp_path / "cell"
    cell_dir.mkdir()
    for name in ("model.pt", "per_image.parquet"):
        (cell_dir / name).write_bytes(b"x")
    (cell_dir / PENDING_FILE).write_text(json.dumps([{"metric": "mIoU", "value": "high"}]))
    with pytest.warns(RuntimeWarning, match="not the rows of a finished evaluation"):
        assert _pending_rows(cell_dir) is None
    assert not (cell_dir / PENDING_FILE).exists()
