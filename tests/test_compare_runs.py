"""`upbench compare`: runs side by side, paired across runs where seeds and images pair; a report
folder that ships its run is a run (report, compare, notebooks)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from compare_run import noisy, targets, write_cell

from upbench.cli import main
from upbench.reporting import write_report
from upbench.reporting.compare import RunBootstrap
from upbench.reporting.runs import compare_runs, load_runs, run_difference

N_BOOT = 300


def _run(path: Path, rates: dict[str, float], seeds=(0, 1), n_images: int = 12, setting: dict | None = None) -> Path:
    """A run whose operators predict the shared targets with the given error rates."""
    tg = targets(n_images)
    for seed in seeds:
        for label, rate in rates.items():
            preds = [noisy(t, rate, 1000 * seed + 7 * i + int(rate * 100)) for i, t in enumerate(tg)]
            write_cell(path, f"{label}-{seed}", label, seed, preds, tg, setting)
    return path


def test_a_run_against_itself_differs_by_exactly_zero(tmp_path: Path) -> None:
    run = _run(tmp_path / "a", {"bilinear": 0.3, "resfu": 0.2})
    frame, unmatched = compare_runs(load_runs([run, run], n_boot=N_BOOT))
    later = frame[frame["run"] == "B"]
    assert unmatched == [] and len(later) == 2 * 3
    assert (later["diff"] == 0).all() and (later["ci_low"] == 0).all() and (later["ci_high"] == 0).all()
    assert later["paired"].all() and not later["significant"].any()


def test_cross_run_difference_equals_the_within_run_one(tmp_path: Path) -> None:
    """Independent reference: the same two prediction sets compared as two runs, and as two labels
    of one run (RunBootstrap.difference, tested on its own), give the same number and interval."""
    tg = targets(12)
    preds = {
        name: {s: [noisy(t, rate, 100 * s + i + int(rate * 50)) for i, t in enumerate(tg)] for s in (0, 1)}
        for name, rate in (("first", 0.35), ("second", 0.15))
    }
    for s in (0, 1):
        write_cell(tmp_path / "a", f"op-{s}", "op", s, preds["first"][s], tg)
        write_cell(tmp_path / "b", f"op-{s}", "op", s, preds["second"][s], tg)
        write_cell(tmp_path / "both", f"x-{s}", "x_first", s, preds["first"][s], tg)
        write_cell(tmp_path / "both", f"y-{s}", "y_second", s, preds["second"][s], tg)
    a, b, both = (RunBootstrap(tmp_path / n, n_boot=N_BOOT) for n in ("a", "b", "both"))
    (sid,) = a.settings
    assert set(b.settings) == {sid} == set(both.settings)
    for metric in ("mIoU", "BF", "BIoU"):
        across = run_difference(a, sid, b, sid, "op", metric)
        within = both.difference(sid, "y_second", "x_first", metric)
        assert across.n_paired == within.n_paired == 2
        assert across.diff == pytest.approx(within.diff, abs=1e-12)
        assert (across.ci_low, across.ci_high) == pytest.approx((within.ci_low, within.ci_high), abs=1e-12)
        assert across.significant  # a much lower error rate: the interval excludes 0


def test_unpaired_seeds_give_no_interval_and_other_settings_are_named(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", {"bilinear": 0.3, "resfu": 0.2}, seeds=(0,))
    b = _run(tmp_path / "b", {"bilinear": 0.3, "resfu": 0.2}, seeds=(5,), setting={"train": {"iters": 99}})
    frame, unmatched = compare_runs(load_runs([a, b], n_boot=N_BOOT))
    later = frame[frame["run"] == "B"]
    assert len(later) == 6 and not later["paired"].any() and later["ci_low"].isna().all()
    assert set(later["differs"]) == {"train.iters=99"}  # matched by title, the difference named
    # the difference of the means, B − A
    row = later[(later["operator"] == "resfu") & (later["metric"] == "mIoU")].iloc[0]
    first = frame[(frame["run"] == "A") & (frame["operator"] == "resfu") & (frame["metric"] == "mIoU")].iloc[0]
    assert row["diff"] == pytest.approx(row["mean"] - first["mean"])
    assert unmatched == []


def test_cli_compare_on_two_report_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_run(tmp_path / n, {"bilinear": 0.3, "resfu": r}) for n, r in (("a", 0.25), ("b", 0.1))]
    reports = [write_report(r, tmp_path / f"report-{r.name}", n_images=1) for r in runs]
    shipped = reports[0] / "run"
    assert (shipped / "results.jsonl.gz").is_file() and not (shipped / "results.jsonl").exists()
    assert sorted(p.name for p in (shipped / "cells" / "resfu-0").iterdir()) == ["config.json", "per_image.parquet"]
    rows = [json.loads(line) for line in gzip.decompress((shipped / "results.jsonl.gz").read_bytes()).splitlines()]
    assert {r["cell_id"] for r in rows} == {"bilinear-0", "bilinear-1", "resfu-0", "resfu-1"}
    assert (
        main(["compare", str(reports[0]), str(reports[1]), "--metrics", "mIoU", "--csv", str(tmp_path / "c.csv")]) == 0
    )
    out = capsys.readouterr().out
    assert f"A: {reports[0]}" in out and f"B: {reports[1]}" in out
    line = next(li for li in out.splitlines() if li.startswith("resfu "))
    assert line.rstrip().endswith("*") and "[+" in line  # B's resfu is better, with an interval
    assert max(len(li) for li in out.splitlines() if not li.startswith(("Values", "  A:", "  B:"))) <= 100
    # the same numbers straight from the run folders
    direct = compare_runs(load_runs(runs, ["mIoU"], n_boot=2000))[0]
    saved = __import__("pandas").read_csv(tmp_path / "c.csv")
    assert saved["diff"].tolist() == pytest.approx(direct["diff"].tolist(), nan_ok=True)


def test_report_redrawn_from_a_report_folder_is_the_same(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", {"bilinear": 0.3, "resfu": 0.2, "nearest": 0.32})
    first = write_report(run, tmp_path / "one", n_images=1)
    again = write_report(first, tmp_path / "two", n_images=1)
    for name in ("report.md", "tables/train-plain-direct-x4-tiny-colourcoded.md", "tables/compare_bilinear.csv"):
        assert (first / name).read_text() == (again / name).read_text(), name
    # drawn in place from its own shipped run: the run folder is left as it is
    before = sorted(p.relative_to(first) for p in (first / "run").rglob("*"))
    assert write_report(first, first, n_images=1) == first
    assert sorted(p.relative_to(first) for p in (first / "run").rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["compare", "/nonexistent/a"], "give two or more run folders"),
        (["compare", "/nonexistent/a", "/nonexistent/b"], "is not a run directory"),
        (["report", "/nonexistent/run", "--metrics", "mIoU"], "is not a run directory"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err and "Traceback" not in err


def test_bad_metric_names_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "a", {"bilinear": 0.3})
    assert main(["report", str(run), "--out", str(tmp_path / "r"), "--metrics", "mIOU"]) == 2
    assert "--metrics: unknown or empty mIOU" in capsys.readouterr().err
    assert main(["compare", str(run), str(run), "--metrics", "BFF"]) == 2
    assert "unknown metric(s) BFF" in capsys.readouterr().err


REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.parent.parent for p in REPO.glob("reports/*/run/results.jsonl.gz"))


@pytest.mark.skipif(not SHIPPED, reason="no committed report ships its run yet")
def test_compare_works_on_the_committed_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Every committed report that ships a train run compares with itself (all differences 0), and
    two committed runs that share a setting compare with each other."""
    train = [p for p in SHIPPED if RunBootstrap(p, n_boot=10).settings]
    for report in train:
        frame, _ = compare_runs(load_runs([report, report], n_boot=50))
        assert (frame.loc[frame["run"] == "B", "diff"].abs() < 1e-12).all()
    titles = {p: {tuple(s.get(k) for k in ("architecture", "protocol", "scale")) for s in
                  RunBootstrap(p, n_boot=10).settings.values()} for p in train}  # fmt: skip
    pairs = [(a, b) for i, a in enumerate(train) for b in train[i + 1 :] if titles[a] & titles[b]]
    if pairs:
        a, b = pairs[0]
        assert main(["compare", str(a), str(b), "--n-boot", "200"]) == 0
        assert f"A: {a}" in capsys.readouterr().out
