"""Reports from a synthetic run: table values, mean/std/n, best marks, deltas, files, determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_run import LABELS, FakeSegModel, fake_val_set, write_synthetic_run

from upbench.errors import UpbenchError
from upbench.reporting import qualitative, summarise, write_report
from upbench.reporting.tables import build_table, select_columns, to_latex, to_markdown, train_columns, train_tables


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    run_dir = tmp_path_factory.mktemp("run")
    rows = pd.DataFrame(write_synthetic_run(run_dir))
    return run_dir, rows


def _expected(rows: pd.DataFrame, label: str, metric: str, arch: str, scale: int) -> pd.Series:
    """Per-seed values of the latest successful attempt, straight from the rows."""
    sel = rows[(rows.label == label) & (rows.metric == metric) & (rows.architecture == arch) & (rows.scale == scale)]
    sel = sel[sel.statistic.isin(["value", "median"]) & (sel.status == "ok")]
    return sel.drop_duplicates(["cell_id", "seed"], keep="last")["value"]


def _md_row(text: str, label: str) -> list[str]:
    line = next(li for li in text.splitlines() if li.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _header(text: str) -> list[str]:
    line = next(li for li in text.splitlines() if li.startswith("| operator |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_summary_aggregates_seeds(run: tuple[Path, pd.DataFrame]) -> None:
    run_dir, rows = run
    train = summarise(run_dir)["train"]
    for label in LABELS:
        values = _expected(rows, label, "mIoU", "plain", 4)
        got = train[
            (train.label == label) & (train.metric == "mIoU") & (train.architecture == "plain") & (train.scale == 4)
        ].iloc[0]
        assert got["n"] == len(values) == 2
        assert got["mean"] == pytest.approx(values.mean())
        assert got["std"] == pytest.approx(values.std(ddof=1))
    # the failed first attempt and the oom cell contribute no measurements
    assert not (train.scale == 16).any()


def test_markdown_table_values_best_and_deltas(run: tuple[Path, pd.DataFrame]) -> None:
    run_dir, rows = run
    columns = select_columns(columns="operator_params,gmacs,latency_forward,peak_memory")
    table = next(
        t
        for t in train_tables(summarise(run_dir)["train"], columns=columns)
        if t.stem.startswith("train-plain-direct-x4")
    )
    text = to_markdown(table)
    header = _header(text)
    col = header.index("mIoU (%)")
    best_label = max(LABELS, key=lambda lab: _expected(rows, lab, "mIoU", "plain", 4).mean())
    for label in LABELS:
        values = _expected(rows, label, "mIoU", "plain", 4) * 100
        cell = _md_row(text, label)[col]
        assert f"{values.mean():.1f}" in cell
        assert f"±{values.std(ddof=1):.1f}" in cell
        assert cell.startswith(f"**{values.mean():.1f}**") == (label == best_label)
        assert "(" not in cell  # compact: differences live in their own tables (and need intervals)
    assert "Difference to bilinear" not in text  # no per-image records: no intervals, no difference table
    assert max(len(line) for line in text.splitlines() if line.startswith("|")) < 120
    # lower is better for costs: the cheapest GMACs is bold
    g = header.index("GMACs")
    cheapest = min(LABELS, key=lambda lab: _expected(rows, lab, "gmacs", "plain", 4).mean())
    assert _md_row(text, cheapest)[g].startswith("**")
    assert all(not _md_row(text, lab)[g].startswith("**") for lab in LABELS if lab != cheapest)
    # a metric with fewer seeds than the row shows its own n; no peak memory -> a dash
    assert "[n=1]" in _md_row(text, "nearest")[header.index("BF (%)")]
    assert _md_row(text, "nearest")[header.index("n")] == "2"
    assert _md_row(text, "resfu")[header.index("peak mem. (MiB)")] == "—"


def test_single_seed_has_no_std_and_no_reference_means_no_delta() -> None:
    summary = pd.DataFrame(
        {
            "label": ["carafe", "dysample"],
            "metric": ["mIoU", "mIoU"],
            "mean": [0.5, 0.25],
            "std": [np.nan, np.nan],
            "n": [1, 1],
        }
    )
    text = to_markdown(build_table(summary, train_columns(), "t", "t"))
    assert "| carafe | 1 | **50.0** |" in text
    assert "| dysample | 1 | 25.0 |" in text
    assert "±" not in text.split("\n\n")[1] and "no bilinear row" in text


def test_column_choice_and_bad_names() -> None:
    assert [c.metric for c in select_columns("mIoU,BF", "gmacs")] == ["mIoU", "BF", "gmacs"]
    assert [c.metric for c in select_columns()] == ["mIoU", "BF", "BIoU", "operator_params", "gmacs", "latency_forward"]
    with pytest.raises(UpbenchError, match="--metrics: unknown or empty mIOU; choose from mIoU, BF"):
        select_columns("mIOU")


def test_latex_table(run: tuple[Path, pd.DataFrame]) -> None:
    run_dir, rows = run
    table = train_tables(summarise(run_dir)["train"])[0]
    tex = to_latex(table)
    assert tex.startswith("% needs \\usepackage{booktabs}\n\\begin{table}") and "\\toprule" in tex
    after = tex.split("\\end{table}")[1].strip().splitlines()
    assert after and all(li.startswith("% ") for li in after)  # the long notes as comments, not in the caption
    assert "mIoU (\\%)" in tex and "$\\pm$" in tex and "\\textbf{" in tex and "\\usepackage{booktabs}" in tex
    body = [li for li in tex.splitlines() if li.endswith("\\\\")]
    assert len(body) == 1 + len(LABELS)
    assert all(li.count("&") == len(table.headers) + 1 for li in body)


def test_write_report_files_and_byte_identical_rerun(run: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    run_dir, _ = run
    out = write_report(run_dir, tmp_path / "a")
    assert out == tmp_path / "a"
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    names = {str(p) for p in files}
    for stem in ("accuracy_vs_gmacs", "bf_vs_ratio", "ops_costs"):
        assert {f"figures/{stem}.png", f"figures/{stem}.svg"} <= names
    assert {
        "tables/train-plain-direct-x4-tiny-colourcoded.md",
        "tables/train-plain-direct-x4-tiny-colourcoded.tex",
        "tables/ops-x2-1x8x4x4g8-float32-cpu.md",
        "report.md",
    } <= names
    assert (out / "figures/ops_costs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ops_md = (out / "tables/ops-x2-1x8x4x4g8-float32-cpu.md").read_text()
    assert "fwd+bwd (ms)" in _header(ops_md) and "fwd+bwd mem. (MiB)" in _header(ops_md)
    report = (out / "report.md").read_text()
    assert "qualitative: no finished train cell saved a model.pt" in report
    assert "`tfail` resfu plain direct x16 seed 0: oom" in report
    # the only timestamps are the rows' own (when the results were written), never the report's
    stamped = [line for line in report.splitlines() if re.search(r"20\d\d-\d\d-\d\dT", line)]
    assert stamped == ["- results written: 2026-01-01T00:00:00+00:00 to 2026-01-01T00:00:00+00:00"]
    again = write_report(run_dir, tmp_path / "b")
    assert sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file()) == files
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), f"{rel} differs on re-run"


def test_default_folder_is_inside_the_run_folder(
    run: tuple[Path, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, _ = run
    monkeypatch.chdir(tmp_path)
    assert write_report(run_dir) == Path(run_dir) / "report"
    assert (Path(run_dir) / "report" / "report.md").is_file()


def test_figures_skipped_with_reason_when_data_is_absent(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rows = [r for r in write_synthetic_run(run_dir, ops=False) if r["architecture"] != "plain"]
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = (write_report(run_dir, tmp_path / "out") / "report.md").read_text()
    assert "- bf_vs_ratio: BF is measured at one ratio only (x8)" in report
    assert "- ops_costs: no ops rows" in report
    assert (tmp_path / "out/figures/accuracy_vs_gmacs.svg").is_file()


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(UpbenchError, match="is not a run directory"):
        write_report(tmp_path)


def test_qualitative_panel_and_mosaic_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    write_synthetic_run(run_dir, ops=False, models=True)
    monkeypatch.setattr(
        qualitative, "load_cell_model", lambda config, n: FakeSegModel(config["operator"], config["scale"], n)
    )
    monkeypatch.setattr(qualitative, "load_val_set", lambda config: (fake_val_set(), 3, 255))
    out = write_report(run_dir, tmp_path / "out", n_images=2)
    stem = "qualitative-plain-direct-x4-tiny-colourcoded"
    assert (out / "figures" / f"{stem}.png").is_file() and (out / "figures" / f"{stem}.svg").is_file()
    report = (out / "report.md").read_text()
    section = report.split("### plain / direct / x4 (tiny, colourcoded)")[-1]
    mosaic = {m[0]: float(m[1]) for m in re.findall(r"\| (\w+) \| (-?\d\.\d{3}) \|", section)}
    assert set(mosaic) == set(LABELS)
    assert mosaic["nearest"] == pytest.approx(1.0)  # the fake nearest model is a perfect mosaic
    assert abs(mosaic["bilinear"]) < 0.5 < mosaic["nearest"]


def test_qualitative_with_the_real_architectures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from upbench.cell import build_cell_model

    run_dir = tmp_path / "run"
    write_synthetic_run(run_dir, ops=False)
    for cell in sorted((run_dir / "cells").iterdir()):
        config = json.loads((cell / "config.json").read_text())
        if (config["architecture"], config["scale"], config["seed"]) == ("plain", 4, 0):
            torch.manual_seed(0)
            torch.save(build_cell_model(config, 3).state_dict(), cell / "model.pt")
    monkeypatch.setattr(qualitative, "load_val_set", lambda config: (fake_val_set(2), 3, 255))
    out = write_report(run_dir, tmp_path / "out", n_images=2)
    assert (out / "figures/qualitative-plain-direct-x4-tiny-colourcoded.png").is_file()
    report = (out / "report.md").read_text()
    section = report.split("## Qualitative panels and mosaic index")[1]
    mosaic = dict(re.findall(r"\| (\w+) \| (-?\d\.\d{3}) \|", section))
    assert set(mosaic) == set(LABELS)
    assert float(mosaic["nearest"]) == pytest.approx(1.0) and abs(float(mosaic["bilinear"])) < 0.05


def test_pca_colouring() -> None:
    torch = pytest.importorskip("torch")
    from upbench.reporting.pca import pca_basis, pca_rgb

    gen = torch.Generator().manual_seed(0)
    feature = torch.randn(6, 8, 8, generator=gen)
    rgb = pca_rgb(feature)
    assert rgb.shape == (8, 8, 3) and rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert np.array_equal(rgb, pca_rgb(feature.clone()))  # deterministic (signs fixed)
    # a map with two distinct values has rank 1: only the first component is coloured
    two = torch.zeros(4, 8, 8)
    two[:, :, 4:] = torch.arange(1.0, 5.0)[:, None, None]
    coloured = pca_rgb(two, pca_basis(two))
    assert set(np.unique(coloured[..., 0])) == {0.0, 1.0} and not coloured[..., 1:].any()
    with pytest.raises(UpbenchError, match="basis fitted on 4 channels"):
        pca_rgb(feature, pca_basis(two))
