"""Multi-process (DDP) cells: ``train.world_size = N`` runs a cell as N processes on every executor.

The runs here are 2 gloo processes on the CPU (each process imports torch and builds the model:
a few seconds per cell on 2 shared cores), so they are marked ``slow``. The same cell run by the
local launcher, a Ray actor group and a submitit job of 2 tasks gives the same rows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from run_answers import answers

from upbench import driver, results
from upbench.errors import ConfigError
from upbench.executors.ddp import ddp_problems, processes_per_node, world_size_of
from upbench.suite import load_suite
from upbench.training import TrainConfig

SUITE = """
operators = ["carafe"]
seeds = [0]

[suite]
name = "tiny-ddp"
kind = "train"

{dataset}

[[architectures]]
name = "plain"
preset = "tiny"
scales = [4]

[train]
iters = 2
batch_size = 2
checkpoint_every = 1
world_size = {world}

[profile]
enabled = false
"""

SYNTHETIC = """[dataset]
name = "contextual"
train = { size = 32, count = 8 }
val = { size = 32, count = 3 }"""


def _suite(tmp_path: Path, world: int = 2, dataset: str = SYNTHETIC) -> Path:
    path = tmp_path / f"ddp{world}.toml"
    path.write_text(SUITE.format(world=world, dataset=dataset))
    return path


# --------------------------------------------------------------------------- the cell and its settings
def test_world_size_is_part_of_the_cell_id_only_above_one(tmp_path) -> None:
    (one,) = load_suite(_suite(tmp_path, world=1)).cells()
    (two,) = load_suite(_suite(tmp_path, world=2)).cells()
    assert "world_size" not in one.config["train"]  # single-process ids stay what they were
    assert two.config["train"]["world_size"] == 2 and one.cell_id != two.cell_id
    assert world_size_of(one) == 1 and world_size_of(two) == 2
    same = {k: v for k, v in two.config["train"].items() if k != "world_size"}
    assert same == one.config["train"]


def test_train_refuses_a_world_size_other_than_its_process_group() -> None:
    from upbench.training import train

    model = torch.nn.Conv2d(3, 2, 1)
    data = [(torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.long))] * 2
    with pytest.raises(ConfigError, match=r"world_size = 2 but this process group has 1 process"):
        train(model, data, TrainConfig(iters=1, batch_size=1, world_size=2), progress=False)


def test_a_checkpoint_written_before_world_size_existed_still_resumes() -> None:
    from upbench.training.loop import _check_resumable

    config = TrainConfig(iters=3)
    saved = {k: v for k, v in config.to_dict().items() if k != "world_size"}
    _check_resumable(saved, config)  # the missing key counts as its default, 1
    with pytest.raises(ConfigError, match=r"world_size: 1 -> 2"):
        _check_resumable(saved, TrainConfig(iters=3, world_size=2))


def test_processes_per_node() -> None:
    assert processes_per_node(8, 0) == (1, 8)
    assert processes_per_node(8, 8) == (1, 8)
    assert processes_per_node(16, 8) == (2, 8)
    assert processes_per_node(1, 4) == (1, 1)
    with pytest.raises(ConfigError, match="not a multiple of gpus_per_node = 4"):
        processes_per_node(6, 4)


def test_sbatch_parameters_of_a_multi_process_cell(tmp_path) -> None:
    pytest.importorskip("submitit")
    from upbench.executors.slurm_executor import _auto_parameters, sbatch_header, sbatch_parameters

    settings = {"cpus_per_cell": 6, "gpus_per_node": 4, "partition": "gpu"}
    params = sbatch_parameters(settings, device="cuda", job_name="upbench-x", world=8)
    assert (params["nodes"], params["ntasks_per_node"], params["gpus_per_node"]) == (2, 4, 4)
    header = sbatch_header(params, tmp_path).splitlines()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4"):
        assert line in header, (line, header)
    assert "#SBATCH --cpus-per-task=6" in header
    auto = _auto_parameters(params, "slurm")
    assert auto["nodes"] == 2 and auto["tasks_per_node"] == 4
    assert auto["slurm_srun_args"] == ["--kill-on-bad-exit=1"]  # a failed rank ends the others
    single = sbatch_parameters(settings, device="cuda", job_name="upbench-y")
    assert (single["nodes"], single["ntasks_per_node"], single["gpus_per_node"]) == (1, 1, 1)
    assert "slurm_srun_args" not in _auto_parameters(single, "slurm")
    cpu = sbatch_parameters({}, device="cpu", job_name="z", world=2)
    assert cpu["ntasks_per_node"] == 2 and "gpus_per_node" not in cpu


def test_local_cuda_run_needs_one_gpu_per_process(tmp_path, monkeypatch) -> None:
    cells = load_suite(_suite(tmp_path, world=4)).cells()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    (problem,) = ddp_problems(cells, "local", "cuda")
    assert "train.world_size = 4 needs 4 GPUs per cell and this machine has 2" in problem
    assert ddp_problems(cells, "ray", "cuda") == [] and ddp_problems(cells, "local", "cpu") == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert ddp_problems(cells, "local", "cuda") == []


def test_a_cell_spanning_nodes_is_checked_before_anything_is_submitted(tmp_path, capsys) -> None:
    from upbench.cli import main

    suite = _suite(tmp_path, world=3)
    assert ddp_problems(load_suite(suite).cells(), "slurm", "cuda", gpus_per_node=2) == [
        "train.world_size = 3 is not a multiple of gpus_per_node = 2: "
        "a cell spanning nodes needs the same number of processes on each"
    ]
    pytest.importorskip("submitit")
    out = tmp_path / "r"
    rc = main(["run", str(suite), "--out", str(out), "--executor", "slurm", "--gpus-per-node", "2", "--device", "cpu"])
    assert rc == 2 and "not a multiple of gpus_per_node = 2" in capsys.readouterr().err
    assert not (out / "slurm").exists() and not (out / "results.jsonl").exists()


# --------------------------------------------------------------------------- running it
@pytest.fixture(scope="module")
def local_ddp(tmp_path_factory) -> tuple[Path, list[tuple]]:
    tmp = tmp_path_factory.mktemp("ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # 2 processes of 1 thread each, as a Ray actor or a SLURM task here
    try:
        summary = driver.run_suite(load_suite(_suite(tmp)), out_dir=tmp / "run", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert summary.failed == 0, summary.describe()
    return tmp / "run", answers(tmp / "run")


@pytest.mark.slow  # two processes each import torch and build the model
def test_local_executor_runs_a_cell_as_world_size_processes(local_ddp) -> None:
    out, _ = local_ddp
    df = results.read_results(out)
    (cell_id,) = set(df["cell_id"])
    cell_dir = out / "cells" / cell_id
    assert json.loads((cell_dir / "config.json").read_text())["train"]["world_size"] == 2
    assert set(df["world_size"]) == {2} and set(df["threads"]) == {1}
    keys = list(zip(df["metric"], df["statistic"]))
    assert len(keys) == len(set(keys))  # rank 0 alone wrote the rows
    assert (cell_dir / "checkpoints" / "last.pt").exists() and (cell_dir / "checkpoints" / "rng_rank1.pt").exists()
    per_image = pd.read_parquet(cell_dir / "per_image.parquet")
    assert sorted(set(per_image["image"])) == [0, 1, 2]  # both ranks' evaluation shares, gathered
    state = torch.load(cell_dir / "checkpoints" / "last.pt", weights_only=True)  # nothing in it can run code
    assert state["iteration"] == 2 and state["config"]["world_size"] == 2


@pytest.mark.slow  # Ray start-up and two actors
def test_ray_actor_group_gives_the_same_rows_as_the_local_launcher(local_ddp, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = driver.run_suite(
            load_suite(_suite(tmp_path)), out_dir=tmp_path / "run", device="cpu", progress=False,
            executor="ray", executor_options={"cpus_per_cell": 1},
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert summary.failed == 0, summary.describe()
    assert answers(tmp_path / "run") == local_ddp[1]
    assert set(results.read_results(tmp_path / "run")["executor"]) == {"ray"}


@pytest.mark.slow  # a submitit job of two tasks
def test_submitit_job_of_two_tasks_gives_the_same_rows_as_the_local_launcher(local_ddp, tmp_path) -> None:
    pytest.importorskip("submitit")
    from upbench.executors import slurm_executor

    slurm_executor.POLL_S = 0.2
    summary = driver.run_suite(
        load_suite(_suite(tmp_path)), out_dir=tmp_path / "run", device="cpu", progress=False,
        executor="slurm", executor_options={"cluster": "local"},
    )  # fmt: skip
    assert summary.failed == 0, summary.describe()
    assert answers(tmp_path / "run") == local_ddp[1]


def _voc_with_one_unreadable_val_image(root: Path) -> Path:
    """A VOC folder whose second validation image is not an image: only rank 1 reads it."""
    base = root / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(0)
    ids = {"train": [f"t{i}" for i in range(4)], "val": ["v0", "v1"]}
    for split, names in ids.items():
        for name in names:
            (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
            (base / "SegmentationClass").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{name}.jpg")
            label = Image.fromarray(rng.integers(0, 21, (32, 32), dtype=np.uint8)).convert("P")
            label.save(base / "SegmentationClass" / f"{name}.png")
        sets = base / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    (base / "JPEGImages" / "v1.jpg").write_text("not a JPEG")
    return root


@pytest.mark.slow  # two processes each import torch and build the model
def test_a_failed_process_fails_the_cell_without_leaving_the_other_waiting(tmp_path) -> None:
    root = _voc_with_one_unreadable_val_image(tmp_path / "data")
    dataset = f"""[dataset]
name = "voc"
root = "{root}"
train = {{ crop_size = 32, scale = [32, 32] }}
val = {{ test_scale = [32, 32] }}"""
    suite = load_suite(_suite(tmp_path, dataset=dataset))
    t0 = time.monotonic()
    summary = driver.run_suite(suite, out_dir=tmp_path / "run", device="cpu", progress=False)
    assert time.monotonic() - t0 < 240  # rank 0, waiting in the evaluation's all-reduce, was stopped
    assert summary.failed == 1
    df = results.read_results(tmp_path / "run")
    (error,) = df.loc[df["metric"] == "cell", "error"]
    assert "DDP process (rank 1) failed" in error and "error_rank1.txt" in error
    (cell_id,) = set(df["cell_id"])
    cell_dir = tmp_path / "run" / "cells" / cell_id
    assert "v1.jpg" in (cell_dir / "error_rank1.txt").read_text()
    # rank 0, if it got to fail before it was stopped, failed on the closed connection to rank 1
    if (cell_dir / "error_rank0.txt").exists():
        assert "v1.jpg" not in (cell_dir / "error_rank0.txt").read_text()
    assert not (cell_dir / "rows.jsonl").exists() or "failed" in (cell_dir / "rows.jsonl").read_text()
