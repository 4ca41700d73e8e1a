"""Executors: ray and slurm (submitit) give the same rows as local; killed workers or drivers lose nothing.

The Ray tests start one local Ray instance of 2 CPUs for the module (about 5 s) and run tiny
train cells in it (each Ray task imports torch and upbench once, a few seconds); the whole file
takes about 75 s on 2 shared cores, so those four tests are marked ``slow``. They skip when ray or
submitit is not installed (both are in the ``dev`` extra).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from run_answers import answers

from upbench import driver, results
from upbench.cli import main
from upbench.errors import ConfigError
from upbench.executors.slurm_executor import sbatch_header, sbatch_parameters
from upbench.suite import load_suite

SUITE = """
operators = ["bilinear", "nearest"]
seeds = [0]

[suite]
name = "tiny-exec"
kind = "train"

[dataset]
name = "contextual"
train = {{ size = 32, count = 8 }}
val = {{ size = 32, count = 2 }}

[[architectures]]
name = "plain"
preset = "tiny"
scales = [4]

[train]
iters = {iters}
batch_size = 2
checkpoint_every = 5

[profile]
enabled = false
"""


@pytest.fixture
def suite_file(tmp_path) -> Path:
    p = tmp_path / "exec.toml"
    p.write_text(SUITE.format(iters=2))
    return p


def _no_duplicates(run_dir: Path) -> None:
    df = results.read_results(run_dir)
    keys = list(zip(df["cell_id"], df["metric"], df["statistic"]))
    assert len(keys) == len(set(keys))


@pytest.fixture(scope="module")
def local_answers(tmp_path_factory) -> list[tuple]:
    import torch

    tmp = tmp_path_factory.mktemp("local")
    (tmp / "exec.toml").write_text(SUITE.format(iters=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray/SLURM worker (cpus_per_cell = 1)
    try:
        summary = driver.run_suite(load_suite(tmp / "exec.toml"), out_dir=tmp / "run", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert summary.failed == 0
    df = results.read_results(tmp / "run")
    assert set(df["executor"]) == {"local"}
    return answers(tmp / "run")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------- ray
@pytest.mark.slow  # Ray/submitit worker start-up: 10-15 s each on 2 shared cores
def test_ray_with_two_workers_gives_the_same_rows_as_local(local_ray, local_answers, suite_file, tmp_path) -> None:
    out = tmp_path / "run"
    summary = driver.run_suite(
        load_suite(suite_file),
        out_dir=out,
        device="cpu",
        progress=False,
        executor="ray",
        executor_options={"workers": 2},
    )
    assert summary.failed == 0 and summary.ran == 2
    assert answers(out) == local_answers
    df = results.read_results(out)
    assert set(df["executor"]) == {"ray"} and df["hostname"].notna().all() and set(df["threads"]) == {1}
    # merged in plan order, whatever order the tasks finished in
    order = [c.cell_id for c in load_suite(suite_file).cells()]
    assert list(dict.fromkeys(df["cell_id"])) == order


@pytest.mark.slow  # Ray/submitit worker start-up: 10-15 s each on 2 shared cores
def test_ray_worker_killed_mid_cell_is_retried_and_nothing_is_lost(local_ray, tmp_path) -> None:
    suite_file = tmp_path / "slow.toml"
    suite_file.write_text(SUITE.format(iters=400))
    out = tmp_path / "run"
    suite = load_suite(suite_file, only=["operator=bilinear"])
    (cell,) = suite.cells()
    done: dict = {}
    thread = threading.Thread(
        target=lambda: done.update(s=driver.run_suite(suite, out_dir=out, device="cpu", progress=False, executor="ray"))
    )
    thread.start()
    note = out / "cells" / cell.cell_id / "worker.txt"
    checkpoint = out / "cells" / cell.cell_id / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():  # the worker is training
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    killed = int(note.read_text().split()[1])
    os.kill(killed, signal.SIGKILL)
    thread.join(timeout=300)
    summary = done["s"]
    assert summary.failed == 0 and summary.ran == 1, summary.describe()
    assert int(note.read_text().split()[1]) != killed  # a new worker ran the cell (from its checkpoint)
    assert results.finished_cells(out) == {cell.cell_id: "ok"}
    _no_duplicates(out)


@pytest.mark.slow  # Ray/submitit worker start-up: 10-15 s each on 2 shared cores
def test_ray_driver_killed_then_rerun_finishes_exactly_the_missing_cells(
    local_ray, local_answers, suite_file, tmp_path
):
    address = local_ray.get_runtime_context().gcs_address
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "upbench", "run", str(suite_file), "--out", str(out), "--no-progress", "--no-report"]
    cmd += ["--device", "cpu", "--executor", "ray", "--ray-address", address, "--workers", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(results.finished_cells(out)) < 1:  # one cell merged, the other not yet
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert len(results.finished_cells(out)) == 1
    with pytest.warns(RuntimeWarning, match="taking over the lock of process"):  # the killed driver's
        summary = driver.run_suite(
            load_suite(suite_file), out_dir=out, device="cpu", progress=False, executor="ray",
            executor_options={"ray_address": address},
        )  # fmt: skip
    assert summary.already_done + summary.ran == 2 and summary.ran <= 1 and summary.failed == 0
    assert answers(out) == local_answers
    _no_duplicates(out)


# --------------------------------------------------------------------------- slurm through submitit
@pytest.mark.slow  # Ray/submitit worker start-up: 10-15 s each on 2 shared cores
def test_submitit_local_executor_gives_the_same_rows_as_local(local_answers, suite_file, tmp_path) -> None:
    pytest.importorskip("submitit")
    from upbench.executors import slurm_executor

    out = tmp_path / "run"
    slurm_executor.POLL_S = 0.2
    summary = driver.run_suite(
        load_suite(suite_file), out_dir=out, device="cpu", progress=False, executor="slurm",
        executor_options={"cluster": "local"},
    )  # fmt: skip
    assert summary.failed == 0 and summary.ran == 2
    assert answers(out) == local_answers
    assert set(results.read_results(out)["executor"]) == {"slurm"}
    assert (out / "slurm").is_dir()  # submitit's job files and logs


def test_sbatch_parameters_from_the_suite_table_and_flags(tmp_path) -> None:
    pytest.importorskip("submitit")
    settings = {"partition": "gpu", "account": "proj", "cpus_per_cell": 4, "mem_gb": 32}
    settings.update(time_min=120, sbatch={"qos": "high", "constraint": "a100"})
    params = sbatch_parameters(settings, device="cuda", job_name="upbench-abc")
    header = sbatch_header(params, tmp_path).splitlines()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=32GB",
        "#SBATCH --time=120",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=a100",
        "#SBATCH --job-name=upbench-abc",
    ):
        assert line in header, (line, header)
    cpu = sbatch_parameters({}, device="cpu", job_name="x")
    assert "gpus_per_node" not in cpu and cpu["cpus_per_task"] == 1


def test_dry_run_prints_the_jobs_and_runs_nothing(suite_file, tmp_path, capsys) -> None:
    pytest.importorskip("submitit")
    text = suite_file.read_text() + '\n[executor]\nname = "slurm"\npartition = "gpu"\ntime_min = 30\n'
    suite_file.write_text(text)
    out = tmp_path / "run"
    rc = main(["run", str(suite_file), "--out", str(out), "--dry-run", "--account", "proj", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "would submit 2 job(s)" in printed
    assert "#SBATCH --partition=gpu" in printed and "#SBATCH --account=proj" in printed
    assert "#SBATCH --time=30" in printed
    assert not (out / results.RESULTS_FILE).exists()


# --------------------------------------------------------------------------- missing extras
@pytest.mark.parametrize(("executor", "module"), [("ray", "ray"), ("slurm", "submitit")])
def test_missing_extra_says_how_to_install_it(executor, module, suite_file, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=rf'pip install -e "\.\[{executor}\]"'):
        driver.run_suite(load_suite(suite_file), out_dir=tmp_path / "r", device="cpu", executor=executor)
    rc = main(["run", str(suite_file), "--out", str(tmp_path / "r"), "--executor", executor, "--device", "cpu"])
    assert rc == 2 and f".[{executor}]" in capsys.readouterr().err


def test_core_install_does_not_pull_the_executor_extras() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "ray" not in core and "submitit" not in core
    assert project["optional-dependencies"]["ray"] and project["optional-dependencies"]["slurm"]


def test_local_executor_records_itself_and_its_host(suite_file, tmp_path) -> None:
    import socket

    driver.run_suite(
        load_suite(suite_file, only=["operator=bilinear"]), out_dir=tmp_path / "r", device="cpu", progress=False
    )
    df = results.read_results(tmp_path / "r")
    assert set(df["executor"]) == {"local"} and set(df["hostname"]) == {socket.gethostname()}
    assert pd.notna(df["cell_id"]).all()


def test_a_lost_worker_is_a_failed_cell_with_its_error_file_and_is_retried(suite_file, tmp_path, monkeypatch) -> None:
    import upbench.executors as executors
    from upbench.executors import Outcome

    class LosingExecutor:
        name = "ray"

        def run(self, tasks, on_done):
            for task in tasks:
                on_done(task, Outcome(task.cell_id, "failed", "?", lost="Ray task lost: WorkerCrashedError: node gone"))

    monkeypatch.setattr(executors, "make_executor", lambda *a, **k: LosingExecutor())
    out = tmp_path / "run"
    summary = driver.run_suite(load_suite(suite_file), out_dir=out, device="cpu", progress=False, executor="ray")
    assert summary.failed == 2 and "error.txt" in summary.describe()
    df = results.read_results(out)
    assert set(df["status"]) == {"failed"} and df["error"].str.contains("node gone").all()
    for cell_id in df["cell_id"]:
        assert "node gone" in (out / "cells" / cell_id / "error.txt").read_text()
    monkeypatch.undo()
    summary = driver.run_suite(load_suite(suite_file), out_dir=out, device="cpu", progress=False)
    assert summary.ran == 2 and summary.failed == 0
    assert set(results.finished_cells(out).values()) == {"ok"}


def test_a_rerun_reattaches_to_the_slurm_jobs_an_earlier_driver_left_running(suite_file, tmp_path, monkeypatch, capsys):
    """A stand-in for SLURM: job 101 (cell 0) is still running when the new driver starts, job 102
    (cell 1) is gone. The new driver waits for 101 (submitting nothing for cell 0) and submits
    cell 1 again. Jobs run in this process."""
    import json

    submitit = pytest.importorskip("submitit")
    from upbench.executors import CellTask, execute_task, slurm_executor

    monkeypatch.setattr(slurm_executor, "POLL_S", 0.01)
    suite = load_suite(suite_file)
    cells = suite.cells()
    out = tmp_path / "run"
    for cell, job_id in zip(cells, ("101", "102")):
        (out / "cells" / cell.cell_id).mkdir(parents=True)
        (out / "cells" / cell.cell_id / "slurm_job.json").write_text(
            json.dumps({"job_id": job_id, "cluster": "slurm", "tasks": 1})
        )

    class EarlierJob:  # what sacct would say about the earlier driver's jobs
        def __init__(self, folder, job_id, tasks):
            self.job_id, self.polls = job_id, 0

        def done(self, force_check=False):
            self.polls += 1
            return self.job_id == "102" or self.polls > 3

        def results(self):  # job 101 ran cell 0 on the cluster meanwhile
            return [execute_task(CellTask(cells[0], suite, out, "cpu"))]

    submitted = []

    class DoneJob:
        def __init__(self, job_id, outcome):
            self.job_id, self.outcome = job_id, outcome

        def done(self, force_check=False):
            return True

        def results(self):
            return [self.outcome]

    class Cluster:  # sbatch: runs the job here, at once
        def __init__(self, folder, cluster):
            pass

        def update_parameters(self, **kwargs):
            pass

        def submit(self, fn, task):
            submitted.append(task.cell_id)
            return DoneJob("900", fn(task))

    monkeypatch.setattr(submitit, "SlurmJob", EarlierJob)
    monkeypatch.setattr(submitit, "AutoExecutor", Cluster)
    summary = driver.run_suite(suite, out_dir=out, device="cpu", progress=False, executor="slurm")
    assert summary.failed == 0 and summary.ran == 2, summary.describe()
    assert submitted == [cells[1].cell_id]  # cell 0 got no second job
    assert f"cell {cells[0].cell_id} is job 101" in capsys.readouterr().out
    assert set(results.finished_cells(out).values()) == {"ok"}
    _no_duplicates(out)
    record = json.loads((out / "cells" / cells[1].cell_id / "slurm_job.json").read_text())
    assert record == {"job_id": "900", "cluster": "slurm", "tasks": 1}
