"""A run folder belongs to one suite, and its report says what it lacks: refused suite or setting
changes (with --replace-stale as the way through), extensions allowed, planned cells without
results listed, impossible ratio values left out of the tables."""

from __future__ import annotations

import json

import pytest
from synthetic_run import write_synthetic_run
from tiny_suites import tiny_ops_suite

from upbench import driver, results
from upbench.cli import main
from upbench.errors import ConfigError
from upbench.reporting import write_report
from upbench.suite import load_suite


def _suite_file(tmp_path, name="owned-ops", operators='["bilinear"]', file="ops.toml"):  # noqa: ANN001, ANN202
    p = tmp_path / file
    p.write_text(tiny_ops_suite(name, operators))
    return p


def _run(*args: str) -> int:
    return main(["run", *args, "--no-progress", "--no-report", "--device", "cpu"])


def test_another_suite_is_refused_before_any_work_and_replace_stale_runs_it(tmp_path, capsys) -> None:
    first, out = _suite_file(tmp_path), tmp_path / "run"
    assert _run(str(first), "--out", str(out)) == 0
    before = (out / results.RESULTS_FILE).read_text()
    command = json.loads((out / "environment.json").read_text())["command"]
    other = _suite_file(tmp_path, name="other-ops", file="other.toml")
    capsys.readouterr()
    assert _run(str(other), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "holds suite 'owned-ops', not 'other-ops'" in err[0] and "suite.name: 'owned-ops' -> 'other-ops'" in err[0]
    assert "new --out" in err[0] and "--replace-stale" in err[0]
    assert (out / results.RESULTS_FILE).read_text() == before  # nothing ran, nothing was written
    assert json.loads((out / "environment.json").read_text())["command"] == command
    assert "owned-ops" in (out / "suite.toml").read_text()

    assert _run(str(other), "--out", str(out), "--replace-stale") == 0
    assert "other.toml" in json.loads((out / "environment.json").read_text())["command"]  # the header's command


def test_a_set_change_that_would_make_finished_cells_stale_is_refused(tmp_path, capsys) -> None:
    suite, out = _suite_file(tmp_path), tmp_path / "run"
    assert _run(str(suite), "--out", str(out)) == 0
    before = (out / results.RESULTS_FILE).read_text()
    capsys.readouterr()
    assert _run(str(suite), "--out", str(out), "--set", "ops.iters=2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 finished cell(s) would become stale (changed ops.iters: 1 -> 2)" in err[0]
    assert "--replace-stale" in err[0]
    assert (out / results.RESULTS_FILE).read_text() == before

    with pytest.warns(RuntimeWarning, match="stale"):
        assert _run(str(suite), "--out", str(out), "--set", "ops.iters=2", "--replace-stale") == 0
        assert len(results.read_results(out)["cell_id"].unique()) == 1  # only the new cell is reported


def test_extending_a_suite_with_new_cells_is_allowed(tmp_path) -> None:
    out = tmp_path / "run"
    driver.run_suite(load_suite(_suite_file(tmp_path)), out_dir=out, device="cpu", progress=False)
    wider = load_suite(_suite_file(tmp_path, operators='["bilinear", "nearest"]'))
    summary = driver.run_suite(wider, out_dir=out, device="cpu", progress=False)
    assert summary.already_done == 1 and summary.ran == 1 and summary.stale == 0
    narrower = load_suite(_suite_file(tmp_path, operators='["nearest"]'))
    with pytest.raises(ConfigError, match=r"1 finished cell\(s\) would become stale \(changed operators"):
        driver.run_suite(narrower, out_dir=out, device="cpu", progress=False)


def test_a_protocol_version_change_is_named(tmp_path, monkeypatch) -> None:
    import upbench.suite.expansion as expansion

    suite_file, out = _suite_file(tmp_path), tmp_path / "run"
    driver.run_suite(load_suite(suite_file), out_dir=out, device="cpu", progress=False)
    monkeypatch.setattr(expansion, "PROTOCOL_VERSION", expansion.PROTOCOL_VERSION + 1)
    new = expansion.PROTOCOL_VERSION
    with pytest.raises(ConfigError, match=f"protocol_version {new - 1} -> {new}"):
        driver.run_suite(load_suite(suite_file), out_dir=out, device="cpu", progress=False)


def test_report_lists_every_planned_cell_without_results(tmp_path) -> None:
    out = tmp_path / "run"
    rows = write_synthetic_run(out, ops=False)
    ran = sorted({r["cell_id"] for r in rows})
    results.write_current_cells(out, [*ran, "never000run", "broken00rows"], 2)
    (out / "cells" / "broken00rows").mkdir(parents=True)
    (out / "cells" / "broken00rows" / "rows.jsonl").write_text("{junk")
    results.merge_cell_rows(out, ["broken00rows"])  # as `run` would: moved aside, with a warning
    report = write_report(out, tmp_path / "report")
    section = (report / "report.md").read_text().split("## Cells without results")[1]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert lines == [
        "- `broken00rows`: needs rerun: its rows.jsonl was unreadable (moved aside)",
        "- `never000run`: never run",
        "- `tfail`: oom: OutOfMemoryError: CUDA out of memory",
    ]


def test_ratio_metrics_outside_0_1_are_flagged_and_left_out_of_tables(tmp_path) -> None:
    out = tmp_path / "run"
    rows = write_synthetic_run(out, ops=False)
    victim = next(r for r in rows if r["metric"] == "mIoU" and r["label"] == "resfu" and r["seed"] == 0)
    path = out / results.RESULTS_FILE
    lines = path.read_text().splitlines()
    fixed = [json.dumps({**r, "value": 7.5}) if r == victim else line for r, line in zip(rows, lines)]
    path.write_text("\n".join(fixed) + "\n")
    with pytest.warns(RuntimeWarning, match=r"1 ratio value\(s\) outside \[0, 1\] left out of the tables: mIoU 7.5 "):
        report = write_report(out, tmp_path / "report")
    text = (report / "report.md").read_text()
    assert "750" not in text
    summary = (report / "tables" / "train_summary.csv").read_text().splitlines()
    header = summary[0].split(",")
    group = {"architecture": victim["architecture"], "scale": str(victim["scale"]), "label": "resfu", "metric": "mIoU"}
    (entry,) = [
        dict(zip(header, line.split(",")))
        for line in summary[1:]
        if all(dict(zip(header, line.split(","))).get(k) == v for k, v in group.items())
    ]
    assert entry["n"] == "1"  # the other seed only
