"""Suite files: validation with clear errors, overrides, stable cell ids, filters."""

from __future__ import annotations

import pytest

from upbench.errors import ConfigError
from upbench.suite import builtin_suites, dump_toml, load_suite, parse_suite

MINIMAL = """
operators = ["bilinear", "nearest"]
seeds = [0, 1]

[suite]
name = "mini"
kind = "train"

[dataset]
name = "contextual"
train = { size = 32, count = 8 }

[[architectures]]
name = "plain"
scales = [4, 16]

[[architectures]]
name = "hierarchical"
protocols = ["jump", "cascade"]

[train]
iters = 2
batch_size = 2
"""


@pytest.fixture
def mini(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text(MINIMAL)
    return path


@pytest.mark.parametrize("name", ["quick", "ops", "ratio", "ablation", "hierarchical", "plain"])
def test_shipped_suites_validate(name: str) -> None:
    assert name in builtin_suites()
    suite = load_suite(name)
    assert suite.name == name
    assert suite.cells(), f"suite {name} has no cells"


def test_cells_grid_and_labels(mini) -> None:
    cells = load_suite(mini).cells()
    # 2 operators x (plain: 2 scales + hierarchical: 2 protocols) x 2 seeds
    assert len(cells) == 2 * 4 * 2
    plain = [c for c in cells if c.config["architecture"] == "plain"]
    assert sorted({c.config["scale"] for c in plain}) == [4, 16]
    hier = {c.config["protocol"]: c.config["scale"] for c in cells if c.config["architecture"] == "hierarchical"}
    assert hier == {"jump": 8, "cascade": 2}
    assert len({c.cell_id for c in cells}) == len(cells)


def test_cell_ids_are_stable_and_depend_on_config(mini) -> None:
    a = [c.cell_id for c in load_suite(mini).cells()]
    b = [c.cell_id for c in load_suite(mini).cells()]
    assert a == b
    changed = [c.cell_id for c in load_suite(mini, overrides=["train.iters=3"]).cells()]
    assert not set(a) & set(changed)
    # adding an operator leaves the ids of the others unchanged
    more = {c.cell_id for c in load_suite(mini, overrides=['operators=["bilinear", "nearest", "deconv"]']).cells()}
    assert set(a) < more


def test_only_filters(mini) -> None:
    cells = load_suite(mini, only=["operator=bili*", "scale=16"]).cells()
    assert len(cells) == 2 and {c.config["seed"] for c in cells} == {0, 1}
    first = load_suite(mini).cells()[0]
    assert [c.cell_id for c in load_suite(mini, only=[first.cell_id[:8]]).cells()] == [first.cell_id]
    with pytest.raises(ConfigError, match="unknown field 'colour'"):
        load_suite(mini, only=["colour=red"]).cells()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.iterz=3", r"unknown key 'iterz' in train \(did you mean 'iters'\?\); valid keys: .*iters"),
        ("train.iters=many", "train.iters = 'many' is not valid; it must be an integer >= 1"),
        ("seeds=3", r"seeds = 3 is not valid; it must be a list of \(an integer >= 0 and <= 4294967295\)"),
        ("eval.mode=sliding", "eval.mode = 'sliding' is not valid; choose one of 'whole', 'slide'"),
        ("suite.kind=nothing", "suite.kind = 'nothing' is not valid"),
        ("architectures.0.scales=[3]", "plain architecture supports 4, 8 and 16"),
        ('architectures.1.protocols=["zigzag"]', "choose from jump, cascade"),
        ('operators=["resfuu"]', "unknown operator 'resfuu'"),
        ("options.bilinear.align=true", "options.bilinear: operator 'bilinear' got unknown option 'align'"),
        ("bogus=1", "unknown key 'bogus' in the suite; valid keys: suite, operators"),
        ("noequals", "--set expects KEY=VALUE"),
    ],
)
def test_bad_values_name_the_problem(mini, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_suite(mini, overrides=[override]).cells()


def test_unknown_suite_and_bad_toml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown suite 'quik'. Did you mean 'quick'"):
        load_suite("quik")
    bad = tmp_path / "bad.toml"
    bad.write_text("[suite\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="suite.name is missing"):
        parse_suite({"suite": {"kind": "ops"}})


def test_dump_toml_round_trips(mini) -> None:
    import tomllib

    suite = load_suite(mini, overrides=["train.iters=5"])
    again = tomllib.loads(dump_toml(suite.data))
    assert again == suite.data
    ablation = load_suite("ablation").data
    assert tomllib.loads(dump_toml(ablation)) == ablation


def test_ops_suite_cells() -> None:
    suite = load_suite("ops", overrides=['operators=["bilinear"]'])
    cpu = suite.cells("cpu")
    assert {c.config["scale"] for c in cpu} == {2, 4, 8, 16}
    assert all(c.kind == "ops" for c in cpu)
    assert len(suite.cells("cuda")) > len(cpu)  # GPU sizes added on CUDA
