"""`plan` (and `run`) check everything before any cell runs: exit 2, one line per problem, all listed."""

from __future__ import annotations

from typing import Literal

import pytest
from tiny_suites import tiny_plain_suite

from upbench import validation
from upbench.cli import main
from upbench.errors import ConfigError
from upbench.suite import load_suite

TINY = tiny_plain_suite("tiny_checks")


@pytest.fixture()
def suite_file(tmp_path):
    path = tmp_path / "tiny_checks.toml"
    path.write_text(TINY)
    return str(path)


def _plan(capsys, *args: str) -> tuple[int, list[str]]:
    rc = main(["plan", *args])
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if line]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "dataset.name=contextul"], "unknown dataset 'contextul'. Did you mean 'contextual'?"),
        (["--set", "dataset.train.sizee=3"], "unknown key 'sizee' in dataset.train (did you mean 'size'?)"),
        (["--set", "train.iters=0"], "train.iters = 0 is not valid; it must be an integer >= 1"),
        (["--set", "train.lr=nan"], "train.lr = nan is not valid; it must be a finite number > 0"),
        (["--set", "profile.iters=0"], "profile.iters = 0 is not valid; it must be an integer >= 1"),
        (["--set", "eval.crop_size=-5"], "eval.crop_size = -5 is not valid; it must be an integer >= 1"),
        (
            ["--set", "options.carafe.up_kernel=4"],
            "option 'up_kernel' = 4 is not valid; it must be an integer >= 1 and <= 19 and odd",
        ),
        (["--set", "options.resfu.eps=-1"], "option 'eps' = -1 is not valid; it must be a finite number > 0"),
        (["--set", "eval.mode=tiles"], "eval.mode = 'tiles' is not valid; choose one of 'whole', 'slide'"),
        (["--only", "operator=resfuu"], "--only operator=resfuu matches none of the suite's 3 cells"),
        (["--only", "colour=red"], "--only colour=red: unknown field 'colour'"),
        (["--set", 'exclude_operators=["nearst"]'], "exclude_operators: pattern 'nearst' matches none"),
        (["--set", "seeds=[0, 1, 0]"], "seeds = [0, 1, 0] repeats 0: each seed may appear once"),
        (
            ["--set", 'variants=[{name = "bilinear", operator = "carafe"}]'],
            "variants: label 'bilinear' is the name of an operator",
        ),
        # needs the operator built: up_group must divide the decoder's channels
        (["--set", "options.carafe.up_group=7"], "up_group=7 must divide in_channels"),
    ],
)
def test_each_bad_input_is_one_line_and_exit_2(capsys, suite_file, args, expected) -> None:
    rc, lines = _plan(capsys, suite_file, *args)
    assert rc == 2
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("upbench: error: ") for line in lines)
    assert not any("Traceback" in line for line in lines)


def test_a_missing_dataset_stops_run_not_plan(capsys, suite_file) -> None:
    args = ["--set", "dataset.name=ade20k", "--set", "dataset.train={}", "--set", "dataset.val={}"]
    assert main(["plan", suite_file, *args]) == 0
    out = capsys.readouterr().out
    assert "3 cell(s)" in out and "problems that would stop `run` (1):" in out and "dataset.root is missing" in out
    with pytest.raises(ConfigError, match="dataset.root is missing"):
        load_suite(suite_file, args[1::2], device="cpu")


def test_all_problems_are_listed_not_just_the_first(capsys, suite_file) -> None:
    rc, lines = _plan(
        capsys,
        suite_file,
        *("--set", "train.iters=0", "--set", "train.lr=nan", "--set", "profile.iters=0"),
        *("--set", "eval.crop_size=-5", "--set", "options.carafe.up_kernel=4", "--set", "options.resfu.eps=-1"),
    )
    assert rc == 2
    assert len(lines) == 6, lines
    for key in ("train.iters", "train.lr", "profile.iters", "eval.crop_size", "'up_kernel'", "'eps'"):
        assert sum(key in line for line in lines) == 1, (key, lines)


def test_only_comma_list_means_any(capsys, suite_file) -> None:
    assert main(["plan", suite_file, "--only", "operator=resfu,carafe"]) == 0
    out = capsys.readouterr().out
    assert "2 cell(s)" in out and "resfu" in out and "carafe" in out and "bilinear" not in out


def test_filters_matching_separately_but_not_together_are_an_error(capsys, suite_file) -> None:
    rc, lines = _plan(capsys, suite_file, "--only", "operator=resfu", "--only", "label=carafe")
    assert rc == 2 and lines == [
        "upbench: error: --only operator=resfu --only label=carafe: no cell matches all these filters together"
    ]


def test_load_suite_with_device_raises_all_lines(suite_file) -> None:
    with pytest.raises(ConfigError) as info:
        load_suite(suite_file, ["train.iters=0", "options.carafe.up_kernel=4"], device="cpu")
    assert len(str(info.value).splitlines()) == 2


# --------------------------------------------------------------------------- the validator
def test_validator_collects_every_problem_with_its_path() -> None:
    problems: list[str] = []
    tp = list[validation.PositiveInt]
    assert validation.validate([1, 0, "x", True], tp, "a.b", problems) == [1, 0, "x", True]
    assert problems == [
        "a.b[1] = 0 is not valid; it must be an integer >= 1",
        "a.b[2] = 'x' is not valid; it must be an integer >= 1",
        "a.b[3] = True is not valid; it must be an integer >= 1",
    ]


def test_validator_literal_lists_the_choices_and_floats_must_be_finite() -> None:
    problems: list[str] = []
    validation.validate("c", Literal["a", "b"], "k", problems)
    validation.validate(float("inf"), float, "f", problems)
    validation.validate((0.5, 2), tuple[validation.Fraction, validation.Fraction], "betas", problems)
    assert problems == [
        "k = 'c' is not valid; choose one of 'a', 'b'",
        "f = inf is not valid; it must be a finite number (got float)",
        "betas[1] = 2 is not valid; it must be a finite number >= 0 and <= 1",
    ]
    assert validation.validate(3, float | None, "g", problems) == 3.0 and len(problems) == 3
