"""upbench.cell on its own: one configuration, one folder, its rows back; no run, suite or executor."""

from __future__ import annotations

import json

from upbench.cell import cell_identity, read_config, run_cell
from upbench.suite import load_suite

OPS = """
operators = ["bilinear"]

[suite]
name = "one-ops-cell"
kind = "ops"

[ops]
scales = [2]
sizes = [[1, 8, 4, 4, 8]]
warmup = 0
iters = 1
"""


def test_a_cell_returns_its_rows_and_writes_only_its_folder(tmp_path) -> None:
    (tmp_path / "ops.toml").write_text(OPS)
    (cell,) = load_suite(tmp_path / "ops.toml").cells()
    cell_dir = tmp_path / "anywhere"
    rows = run_cell(cell.config, cell_dir, device="cpu", progress=False)
    assert rows[-1]["metric"] == "cell" and rows[-1]["status"] == "ok" and rows[-1]["value"] > 0
    assert {"params", "gmacs", "latency_forward"} <= {r["metric"] for r in rows}
    assert all(set(r) == {"metric", "value", "unit", "statistic", "status", "error"} for r in rows)
    assert read_config(cell_dir) == json.loads(json.dumps(cell.config))
    assert sorted(p.name for p in cell_dir.iterdir()) == ["config.json"]  # no rows file: recording is not its job
    assert cell_identity(cell.config)["lr_height"] == 4


def test_a_failing_cell_is_a_failed_row_and_its_traceback(tmp_path) -> None:
    (tmp_path / "ops.toml").write_text(OPS)
    (cell,) = load_suite(tmp_path / "ops.toml").cells()
    broken = {**cell.config, "ops": {**cell.config["ops"], "dtype": "no_such_dtype"}}
    rows = run_cell(broken, tmp_path / "cell", device="cpu", progress=False)
    assert [r["metric"] for r in rows] == ["cell"]
    assert rows[0]["status"] == "failed" and "no_such_dtype" in rows[0]["error"]
    assert "Traceback" in (tmp_path / "cell" / "error.txt").read_text()
