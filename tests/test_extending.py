"""docs/extending.md: its four examples, each one file found through its entry-point group, and their tests.

The examples are read from the page itself, written as modules, loaded as third-party plugins
(through ``upbench.plugins.load_entry_points``, as the registries load them) and removed again
after each test. A tiny suite then uses the operator, the dataset and the metric together: the
metric must reach the rows, the per-image records, the bootstrap comparison and the tables with
no edit anywhere else.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import inspect
import re
import sys
from pathlib import Path

import pytest

import upbench
from upbench import data, executors, metrics, registry, results
from upbench.data import registry as data_registry
from upbench.executors import registry as executor_registry
from upbench.metrics import registry as metric_registry
from upbench.plugins import load_entry_points

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
KINDS = ("operator", "metric", "dataset", "executor")
NAMES = {"operator": "smooth_bilinear", "metric": "fw_iou", "dataset": "stripes", "executor": "subprocess"}


def example(kind: str, test: bool = False) -> str:
    """The code block after ``<!-- example: KIND -->`` (or ``<!-- example-test: KIND -->``)."""
    marker = f"<!-- example{'-test' if test else ''}: {kind} -->"
    found = re.search(re.escape(marker) + r"\s*```python\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"docs/extending.md has no {marker} code block"
    return found.group(1)


def _unregister() -> None:
    for name, remove in (
        (NAMES["operator"], registry.unregister_operator),
        (NAMES["metric"], metrics.unregister_metric),
        (NAMES["dataset"], data.unregister_dataset),
        (NAMES["executor"], executor_registry.unregister_executor),
    ):
        with contextlib.suppress(upbench.UpbenchError):  # already removed
            remove(name)
    for kind in KINDS:
        sys.modules.pop(f"upbench_example_{kind}", None)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The four examples as plugin modules, loaded through their entry-point groups."""
    upbench.list_operators(), metrics.metric_classes(), data.list_datasets(), executors.executor_names()
    groups = {
        "operator": registry.ENTRY_POINT_GROUP,
        "metric": metric_registry.ENTRY_POINT_GROUP,
        "dataset": data_registry.ENTRY_POINT_GROUP,
        "executor": executor_registry.ENTRY_POINT_GROUP,
    }
    folder = tmp_path / "plugins"
    folder.mkdir()
    eps = []
    for kind in KINDS:
        (folder / f"upbench_example_{kind}.py").write_text(example(kind))
        eps.append(md.EntryPoint(kind, f"upbench_example_{kind}", groups[kind]))
    monkeypatch.syspath_prepend(str(folder))
    real = md.entry_points

    def entry_points(**selection: str) -> object:  # ours for upbench's groups, the installed ones for others
        if selection.get("group") in groups.values():
            return [e for e in eps if e.group == selection["group"]]
        return real(**selection)

    monkeypatch.setattr(md, "entry_points", entry_points)
    try:
        loaded = {"operator": registry.load_plugins()}
        loaded.update({kind: load_entry_points(groups[kind], kind) for kind in KINDS[1:]})
        yield loaded
    finally:
        _unregister()


def test_each_example_is_one_module_found_through_its_entry_point_group(plugins) -> None:
    assert plugins == {kind: [kind] for kind in KINDS}
    assert upbench.operator_info("smooth_bilinear").origin == "plugin:operator"
    assert metrics.headline_metrics() == ("mIoU", "BF", "BIoU", "fwIoU")
    assert "stripes" in data.list_datasets() and "subprocess" in executors.executor_names()
    _unregister()
    assert metrics.headline_metrics() == ("mIoU", "BF", "BIoU") and "stripes" not in data.list_datasets()


@pytest.mark.parametrize("kind", KINDS)
def test_the_example_tests_pass(plugins, kind: str, tmp_path: Path) -> None:
    namespace: dict = {}
    exec(compile(example(kind, test=True), f"docs/extending.md ({kind} test)", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert tests
    for fn in tests:
        fn(*([tmp_path / fn.__name__] if inspect.signature(fn).parameters else []))


SUITE = """
operators = ["bilinear", "smooth_bilinear"]
seeds = [0]

[suite]
name = "extending"
kind = "train"

[dataset]
name = "stripes"
train = { size = 32, count = 8 }
val = { size = 32, count = 4 }

[[architectures]]
name = "plain"
preset = "tiny"
scales = [4]

[train]
iters = 2
batch_size = 2
warmup_iters = 0

[profile]
enabled = false
"""


def test_the_new_metric_reaches_rows_records_comparisons_and_tables(plugins, tmp_path: Path) -> None:
    from upbench.driver import run_suite
    from upbench.metrics.per_image import FILE_NAME, read_per_image
    from upbench.reporting import compare, summarise, to_markdown, train_tables
    from upbench.reporting.compare import RunBootstrap
    from upbench.suite import load_suite

    (tmp_path / "suite.toml").write_text(SUITE)
    run = tmp_path / "run"
    summary = run_suite(load_suite(tmp_path / "suite.toml", device="cpu"), out_dir=run, device="cpu", progress=False)
    assert summary.ran == 2 and summary.failed == 0, summary.describe()

    rows = results.read_results(run)
    fw = rows[rows["metric"] == "fwIoU"].set_index("operator")["value"]
    assert sorted(fw.index) == ["bilinear", "smooth_bilinear"] and fw.between(0, 1).all()

    for cell_id, operator in rows.groupby("cell_id")["operator"].first().items():
        records = read_per_image(run / "cells" / cell_id / FILE_NAME)
        sums = records[["fw_inter", "fw_target", "fw_pred"]].groupby(records["class"]).sum()
        union = sums["fw_target"] + sums["fw_pred"] - sums["fw_inter"]
        iou = (sums["fw_inter"] / union).where(union > 0, 0.0)
        assert (sums["fw_target"] * iou).sum() / sums["fw_target"].sum() == pytest.approx(fw[operator], abs=1e-12)

    compared = compare(run, n_boot=50)
    ours = compared[(compared["metric"] == "fwIoU") & (compared["operator"] == "smooth_bilinear")].iloc[0]
    assert ours["n_paired"] == 1 and ours["ci_low"] <= ours["diff"] <= ours["ci_high"]
    assert ours["diff"] == pytest.approx(fw["smooth_bilinear"] - fw["bilinear"], abs=1e-12)

    (table,) = train_tables(summarise(run)["train"], RunBootstrap(run, n_boot=50))
    header = next(line for line in to_markdown(table).splitlines() if "mIoU (%)" in line)
    assert "fwIoU (%)" in header
