"""No silent data loss: torn lines, bad rows, incomplete cells, a killed runner, one runner per folder, stale cells."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from upbench import driver, results
from upbench.cli import main
from upbench.errors import ConfigError
from upbench.runlock import LOCK_FILE, RunLock, RunLockedError
from upbench.suite import load_suite

OPS = """
operators = ["bilinear", "nearest"]

[suite]
name = "safe-ops"
kind = "ops"

[ops]
scales = [2, 4]
sizes = [[1, 4, 4, 4, 4]]
warmup = 0
iters = 1
modes = ["forward"]
"""


@pytest.fixture
def ops_file(tmp_path) -> Path:
    p = tmp_path / "ops.toml"
    p.write_text(OPS)
    return p


def _run(ops_file: Path, out: Path, *only: str) -> driver.RunSummary:
    return driver.run_suite(load_suite(ops_file, only=only), out_dir=out, device="cpu", progress=False)


def _point_rows(out: Path) -> list[tuple]:
    df = results.read_results(out)
    return sorted(df[["cell_id", "metric", "statistic"]].itertuples(index=False, name=None))


# --------------------------------------------------------------------------- torn lines and schema
def test_torn_last_line_is_moved_aside_before_appending(tmp_path) -> None:
    path = tmp_path / results.RESULTS_FILE
    good = {
        "cell_id": "a",
        "attempt": 1,
        "metric": "m",
        "value": 1.0,
        "unit": "s",
        "statistic": "value",
        "status": "ok",
    }
    path.write_text(json.dumps(good) + "\n" + '{"cell_id": "b", "metr')
    with pytest.warns(RuntimeWarning, match="torn"):
        results.append_rows(tmp_path, [{**good, "cell_id": "c"}])
    lines = path.read_text().splitlines()
    assert [json.loads(line)["cell_id"] for line in lines] == ["a", "c"]  # nothing glued to the torn line
    assert (tmp_path / "results.jsonl.corrupt").read_text() == '{"cell_id": "b", "metr\n'


@pytest.mark.parametrize("line", ["{}", "null", "[1, 2]", '{"cell_id": "x", "metric": "cell"}'])
def test_rows_of_the_wrong_shape_are_reported_with_their_line_number(ops_file, tmp_path, line) -> None:
    out = tmp_path / "run"
    _run(ops_file, out, "operator=bilinear")
    with open(out / results.RESULTS_FILE, "a") as fh:
        fh.write(line + "\n")
    n = len((out / results.RESULTS_FILE).read_text().splitlines())
    with pytest.warns(RuntimeWarning, match=rf"results.jsonl:{n}: skipping a row that does not fit the schema"):
        df = results.read_results(out)
    assert set(df["operator"]) == {"bilinear"}
    with pytest.warns(RuntimeWarning, match="does not fit the schema"):
        assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0


def test_a_cell_with_a_missing_row_is_not_finished_and_runs_again(ops_file, tmp_path) -> None:
    out = tmp_path / "run"
    _run(ops_file, out)
    before = _point_rows(out)
    path = out / results.RESULTS_FILE
    lines = path.read_text().splitlines()
    victim = json.loads(lines[1])  # a measurement row of the first cell (its cell row is later)
    assert victim["metric"] != "cell"
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    assert victim["cell_id"] not in results.finished_cells(out)
    summary = _run(ops_file, out)
    # its rows file was complete: merged again as a new attempt, no recomputation needed
    assert summary.already_done == 4 and summary.ran == 0
    assert _point_rows(out) == before


# --------------------------------------------------------------------------- a runner killed mid-write
KILLED_RUNNER = """
import sys, time
from pathlib import Path
from upbench import driver, results
from upbench.suite import load_suite

real = results.append_rows
calls = []

def torn_append(run_dir, rows):
    calls.append(1)
    rows = list(rows)
    if len(calls) < 3:
        return real(run_dir, rows)
    text = results._dumps(rows)
    with open(Path(run_dir) / results.RESULTS_FILE, "a") as fh:   # half of the third cell's rows
        fh.write(text[: len(text) // 2])
        fh.flush()
    Path(sys.argv[3]).write_text("torn")
    time.sleep(60)  # killed here

results.append_rows = torn_append
driver.run_suite(load_suite(sys.argv[1]), out_dir=sys.argv[2], device="cpu", progress=False)
"""


def test_runner_sigkilled_during_a_write_then_resumed_loses_and_duplicates_nothing(ops_file, tmp_path) -> None:
    clean = tmp_path / "clean"
    _run(ops_file, clean)
    expected = [(m, s) for _, m, s in _point_rows(clean)]

    out, marker = tmp_path / "run", tmp_path / "torn.marker"
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED_RUNNER))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(ops_file), str(out), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the runner ended before the torn write"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not (out / results.RESULTS_FILE).read_text().endswith("\n")
    with pytest.warns(RuntimeWarning, match="results.jsonl:26: skipping a truncated or invalid line"):
        assert len(results.finished_cells(out)) == 2

    with pytest.warns(RuntimeWarning) as caught:
        summary = _run(ops_file, out)
    messages = " | ".join(str(w.message) for w in caught)
    assert "no longer runs" in messages  # the dead runner's lock is taken over
    assert "the last line was torn by an interrupted write; moved to" in messages
    assert summary.total == 4 and summary.failed == 0
    assert (out / "results.jsonl.corrupt").is_file()
    rows = _point_rows(out)
    assert len(rows) == len(set(rows))  # nothing duplicated
    assert sorted((m, s) for _, m, s in rows) == sorted(expected)  # nothing lost
    assert len(results.finished_cells(out)) == 4


# --------------------------------------------------------------------------- one runner per folder
def test_second_runner_on_the_same_folder_exits_2_naming_the_holder(ops_file, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        rc = main(["run", str(ops_file), "--out", str(out), "--no-progress", "--no-report", "--device", "cpu"])
        err = capsys.readouterr().err
        assert rc == 2
        assert f"pid {os.getpid()}" in err and "host" in err and "started" in err
        assert len(err.strip().splitlines()) == 1
        assert not (out / results.RESULTS_FILE).exists()
    assert not (out / LOCK_FILE).exists()  # released


def test_lock_of_a_live_process_is_respected_and_of_a_dead_one_taken_over(tmp_path) -> None:
    held = RunLock(tmp_path)
    held.acquire()
    with pytest.raises(RunLockedError, match="in use by another runner"):
        RunLock(tmp_path).acquire()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    info = {**held.holder(), "pid": int(dead.stdout)}
    (tmp_path / LOCK_FILE).write_text(json.dumps(info))
    warns = pytest.warns(RuntimeWarning, match=f"taking over the lock of process {info['pid']}")
    with warns, RunLock(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()


# --------------------------------------------------------------------------- cell identity and stale cells
def test_cell_id_is_the_resolved_configuration(tmp_path) -> None:
    from tiny_suites import TINY_TRAIN_SUITE

    from upbench.registry import operator_info
    from upbench.training import TrainConfig

    p = tmp_path / "t.toml"
    p.write_text(TINY_TRAIN_SUITE)
    plain = {c.cell_id for c in load_suite(p).cells()}
    lr = TrainConfig().lr
    explicit = load_suite(p, [f"train.lr={lr!r}", "options.bilinear.align_corners=false"]).cells()
    assert {c.cell_id for c in explicit} == plain  # a default written out is the same cell
    cell = explicit[0]
    full = TrainConfig(**cell.config["train"]).to_dict()
    assert full.pop("world_size") == 1  # world_size enters the id only above 1 (see test_ddp_cells)
    assert cell.config["train"] == full  # every other training default
    assert cell.config["resolved_options"] == operator_info(cell.config["operator"]).options  # operator defaults
    assert set(cell.config["metrics"]) >= {"bf_tolerance", "biou_dilation_ratio"}
    assert set(cell.config["dataset"]["train"]) >= {"size", "count"}
    assert "protocol_version" in cell.config


def test_cells_of_other_defaults_are_stale_and_left_out_of_reports(ops_file, tmp_path, monkeypatch) -> None:
    import upbench.suite.expansion as suite_module

    out = tmp_path / "run"
    _run(ops_file, out)
    old = set(results.read_results(out)["cell_id"])
    monkeypatch.setattr(suite_module, "PROTOCOL_VERSION", suite_module.PROTOCOL_VERSION + 1)
    with pytest.raises(ConfigError, match="4 finished cell\\(s\\) would become stale"):
        _run(ops_file, out)  # refused unless asked for (see test_run_folder.py)
    summary = driver.run_suite(load_suite(ops_file), out_dir=out, device="cpu", progress=False, replace_stale=True)
    assert summary.ran == 4 and summary.stale == 4
    assert "4 stale cell(s)" in summary.describe()
    with pytest.warns(RuntimeWarning, match="4 cell\\(s\\) were made with other settings"):
        new = set(results.read_results(out)["cell_id"])
    assert new and not (new & old)
