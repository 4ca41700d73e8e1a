"""The README's main job, end to end through the CLI on a tiny suite: run, report, resume, notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_suites import TINY_TRAIN_SUITE


def _upbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "upbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("main_job")
    (root / "tiny.toml").write_text(TINY_TRAIN_SUITE)
    proc = _upbench("run", "tiny.toml", "--out", "runs/tiny", "--no-progress", cwd=root)
    return root, proc


def test_run_prints_where_results_and_report_are(tiny_run) -> None:
    root, proc = tiny_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 cell(s): 0 already done, 4 run now (0 failed)" in proc.stdout
    assert f"results: {Path('runs/tiny/results.jsonl')}" in proc.stdout
    assert f"report: {Path('runs/tiny/report')}" in proc.stdout
    assert (root / "runs" / "tiny" / "report" / "report.md").is_file()
    assert not (root / "reports").exists()  # nothing outside runs/
    assert (root / "runs" / "tiny" / "results.parquet").is_file()
    header = (root / "runs" / "tiny" / "report" / "report.md").read_text().split("## ")[0]
    assert "- command: `python -m upbench run tiny.toml --out runs/tiny --no-progress`" in header
    assert "- cpu_count: " in header and "- results written: 20" in header


def test_second_run_finishes_at_once(tiny_run) -> None:
    root, _ = tiny_run
    proc = _upbench("run", "tiny.toml", "--out", "runs/tiny", "--no-progress", "--no-report", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 cell(s): 4 already done, 0 run now" in proc.stdout
    env = json.loads((root / "runs" / "tiny" / "environment.json").read_text())
    assert env["command"] == "python -m upbench run tiny.toml --out runs/tiny --no-progress"  # the first one


def test_report_is_byte_identical_when_rerun(tiny_run) -> None:
    root, _ = tiny_run
    first = (root / "runs" / "tiny" / "report" / "report.md").read_bytes()
    proc = _upbench("report", "runs/tiny", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (root / "runs" / "tiny" / "report" / "report.md").read_bytes() == first


def test_explore_notebook_on_the_real_run(tiny_run, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root, _ = tiny_run
    monkeypatch.setenv("UPBENCH_RUN_DIR", str(root / "runs" / "tiny"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "explore_results.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(root)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "suite 'tiny'" in text


def test_main_job_from_the_checkout_leaves_git_status_clean(tmp_path) -> None:
    """The README's main command, run in the repository itself (one cell), modifies no tracked
    file and leaves nothing untracked outside git-ignored folders."""
    import shutil

    repo = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")

    def status() -> str:
        return subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout

    before = status()
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_TRAIN_SUITE)
    out = repo / "runs" / f"test-main-job-{os.getpid()}"
    try:
        proc = _upbench(
            "run", str(suite), "--out", str(out), "--no-progress",
            "--only", "operator=bilinear", "--only", "architecture=plain", cwd=repo,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (out / "report" / "report.md").is_file()
        assert status() == before
    finally:
        shutil.rmtree(out, ignore_errors=True)
