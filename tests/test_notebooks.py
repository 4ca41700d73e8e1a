"""The notebooks run top to bottom (nbclient, python3 kernel) on a small run made here."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
from synthetic_run import write_synthetic_run  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _execute(
    name: str, cwd: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> nbformat.NotebookNode:
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=90, startup_timeout=60, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


@pytest.mark.parametrize("name", ["explore_results.ipynb", "resfu_walkthrough.ipynb"])
def test_notebooks_are_stored_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert not _outputs(nb) and all(
        c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"
    )


@pytest.mark.parametrize("shipped", [False, True], ids=["run-folder", "report-folder"])
def test_explore_results_runs_on_a_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shipped: bool) -> None:
    run_dir = tmp_path / "run"
    write_synthetic_run(run_dir)
    if shipped:  # a committed report folder: its run/ holds the results
        from upbench.reporting import write_report

        run_dir = write_report(run_dir, tmp_path / "report", n_images=1)
    nb = _execute(
        "explore_results.ipynb",
        tmp_path,
        {"UPBENCH_RUN_DIR": str(run_dir), "OMP_NUM_THREADS": "1"},
        monkeypatch,
    )
    outputs = _outputs(nb)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "suite 'synthetic-suite'" in text
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs if "data" in o)
    assert "### plain / direct / x4 (tiny, colourcoded)" in markdown and "**" in markdown
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # the three figures


def test_resfu_walkthrough_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute("resfu_walkthrough.ipynb", tmp_path, {"OMP_NUM_THREADS": "1"}, monkeypatch)
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # scene, alignment, geometry, outputs
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "ReSFU (fine): final MSE" in text
