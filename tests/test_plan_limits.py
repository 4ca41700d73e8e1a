"""Settings that are well-typed but would fail once cells run (a batch larger than the training set,
a seed numpy refuses, Triton on a CPU, more memory than the machine has, ...) are refused by `plan`
and `run` alike: exit 2, one line naming the key, and no run folder created."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_suites import tiny_plain_suite

from upbench.cli import main
from upbench.suite import builtin_suites, limits, load_suite

TINY = tiny_plain_suite("tiny_limits")

OPS = """
operators = ["bilinear", "nearest"]

[suite]
name = "tiny_ops"
kind = "ops"

[ops]
scales = [2, 4]
sizes = [[1, 8, 4, 4, 8]]
"""

GIB = 2**30


@pytest.fixture()
def here(tmp_path, monkeypatch) -> Path:
    """Work in ``tmp_path`` (so that ``runs/`` would appear there), on a CPU run without Triton's
    interpreter (the test session turns it on) and a machine of 64 GiB (the same answer anywhere)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(limits, "machine_memory", lambda device: 64 * GIB)
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "ops.toml").write_text(OPS)
    return tmp_path


def _refused(capsys, here: Path, command: str, suite: str, *args: str) -> str:
    """Run ``command`` (plan or run) on the CPU; assert exit 2, one error line, no folder made."""
    extra = ["--no-progress", "--no-report"] if command == "run" else []
    before = sorted(p.name for p in here.iterdir())
    rc = main([command, str(here / suite), "--device", "cpu", *extra, *args])
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("upbench: error: "), err
    assert sorted(p.name for p in here.iterdir()) == before, "something was created"
    return err[0]


CASES = [
    # 1. batch larger than the training set (4 samples of the generated dataset)
    (
        "tiny.toml",
        ["--set", "train.batch_size=8"],
        "train.batch_size = 8 is larger than the training set: dataset 'contextual' has 4 train samples",
    ),
    # 2. seeds numpy refuses
    (
        "tiny.toml",
        ["--set", "seeds=[99999999999999]"],
        "seeds[0] = 99999999999999 is not valid; it must be an integer >= 0 and <= 4294967295",
    ),
    ("tiny.toml", ["--set", "train.seed=4294967296"], "train.seed = 4294967296 is not valid"),
    # 3. learning rates
    (
        "tiny.toml",
        ["--set", "train.lr=1e300"],
        "train.lr = 1e+300 is not valid; it must be a finite number > 0 and <= 10",
    ),
    ("tiny.toml", ["--set", "train.lr=inf"], "train.lr = inf is not valid; it must be a finite number > 0 and <= 10"),
    ("tiny.toml", ["--set", "train.lr=0"], "train.lr = 0 is not valid; it must be a finite number > 0 and <= 10"),
    # 4. Triton kernels on a CPU run
    (
        "tiny.toml",
        ["--set", 'options.resfu.aggregation="triton"'],
        "options.resfu.aggregation = 'triton' needs a CUDA device, and this run's device is cpu",
    ),
    # 5. operator options beyond what the official kernel can run
    (
        "tiny.toml",
        ["--set", "options.carafe.up_kernel=1001"],
        "options.carafe: operator 'carafe': option 'up_kernel' = 1001 is not valid; "
        "it must be an integer >= 1 and <= 19 and odd",
    ),
    (
        "tiny.toml",
        ["--set", "options.carafe.up_kernel=19", "--set", "options.carafe.up_group=2"],
        "up_kernel=19 with up_group=2 gives 722 taps; mmcv's CARAFE kernel holds at most 384",
    ),
    # 6. a profile image larger than the memory
    (
        "tiny.toml",
        ["--set", "profile.image_size=100000"],
        "profile.image_size = 100000: profiling at 100000x100000 (the input image and its logits, batch 1) needs at "
        "least",
    ),
    # 7. the same value twice in a list-valued axis
    ("tiny.toml", ["--set", "architectures.0.scales=[4, 4]"], "architectures[0].scales = [4, 4] repeats 4"),
    ("tiny.toml", ["--set", 'operators=["resfu", "resfu"]'], "operators = ['resfu', 'resfu'] repeats resfu"),
    ("ops.toml", ["--set", "ops.scales=[2, 4, 2]"], "ops.scales = [2, 4, 2] repeats 2: each scale may appear once"),
    (
        "ops.toml",
        ["--set", "ops.settings=[[1, 8, 4, 4, 8, 2]]"],
        "appears more than once in the suite (and 1 other cell(s))",
    ),
    # 8. no cells
    ("tiny.toml", ["--set", "operators=[]"], "the suite has no cells: operators = [] selects no operator"),
    (
        "tiny.toml",
        ["--set", 'exclude_operators=["*"]'],
        "the suite has no cells: exclude_operators = ['*'] removes all 3 operator(s)",
    ),
    ("ops.toml", ["--set", "ops.sizes=[]"], "the suite has no cells on cpu: ops.sizes = []"),
    # 9. options of an operator the suite does not run
    (
        "tiny.toml",
        ["--set", 'operators=["bilinear", "resfu"]', "--set", "options.carafe.up_kernel=3"],
        "options.carafe: operator 'carafe' is not in the suite (operators: bilinear, resfu)",
    ),
    (
        "tiny.toml",
        ["--set", 'exclude_operators=["carafe"]', "--set", "options.carafe.up_kernel=3"],
        "options.carafe: operator 'carafe' is removed by exclude_operators",
    ),
    # 10. a suite name that is not one safe folder name
    ("tiny.toml", ["--set", 'suite.name="../escaped"'], "suite.name = '../escaped' is not valid"),
    ("tiny.toml", ["--set", 'suite.name=".hidden"'], "suite.name = '.hidden' is not valid"),
]


@pytest.mark.parametrize(("suite", "args", "expected"), CASES, ids=[" ".join(c[1][1::2]) for c in CASES])
def test_plan_refuses_what_run_would_fail_on(capsys, here, suite, args, expected) -> None:
    line = _refused(capsys, here, "plan", suite, *args)
    assert expected in line, line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", 'suite.name="../escaped"'], "suite.name = '../escaped' is not valid"),
        (["--set", "train.batch_size=8"], "train.batch_size = 8 is larger than the training set"),
        (["--set", 'options.resfu.aggregation="triton"'], "options.resfu.aggregation = 'triton' needs a CUDA device"),
        (["--set", "seeds=[99999999999999]"], "seeds[0] = 99999999999999 is not valid"),
    ],
)
def test_run_refuses_them_before_the_run_folder_exists(capsys, here, args, expected) -> None:
    line = _refused(capsys, here, "run", "tiny.toml", *args)
    assert expected in line, line
    assert not (here / "runs").exists() and not (here / "escaped").exists()


def test_a_model_larger_than_the_memory_is_refused_with_the_estimate(capsys, here, monkeypatch) -> None:
    monkeypatch.setattr(limits, "machine_memory", lambda device: 2**20)  # a 1 MiB machine
    line = _refused(capsys, here, "plan", "tiny.toml", "--only", "operator=carafe")
    assert "operator 'carafe' (plain, direct, x4): training its model's" in line
    assert "(weights, gradients, optimizer state) needs at least" in line and "more than the 1 MiB" in line


def test_unknown_sizes_and_interpreted_triton_are_not_refused(capsys, here, monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the operators can run Triton on the CPU then
    monkeypatch.setattr(limits, "machine_memory", lambda device: None)
    args = ["--set", 'options.resfu.aggregation="triton"', "--set", "profile.image_size=100000"]
    assert main(["plan", str(here / "tiny.toml"), "--device", "cpu", *args]) == 0, capsys.readouterr().err
    # a folder dataset that is absent: its size is unknown, so no batch refusal (plan lists the missing root)
    args = ["--set", "dataset.name=ade20k", "--set", "dataset.train={}", "--set", "dataset.val={}"]
    assert main(["plan", str(here / "tiny.toml"), "--device", "cpu", *args, "--set", "train.batch_size=64"]) == 0
    assert "dataset.root is missing" in capsys.readouterr().out


def test_the_batch_size_is_checked_against_a_folder_dataset_that_is_present(capsys, ade, here) -> None:
    args = ["--set", "dataset.name=ade20k", "--set", f"dataset.root={ade}", "--set", "dataset.train={}"]
    args += ["--set", "dataset.val={}", "--set", "train.batch_size=3"]
    line = _refused(capsys, here, "plan", "tiny.toml", *args)
    assert "train.batch_size = 3 is larger than the training set: dataset 'ade20k' has 2 train samples" in line


def test_machine_memory_reads_this_machine() -> None:
    total = limits.machine_memory("cpu")
    assert total is None or total > 2**27  # more than 128 MiB wherever the tests run


@pytest.mark.parametrize("name", builtin_suites())
def test_no_shipped_suite_is_refused(name) -> None:
    """The new limits refuse no shipped suite (planned on the CPU, as ``plan`` does without a GPU)."""
    suite = load_suite(name, device="cpu", check_data=False)
    assert suite.cells("cpu")
