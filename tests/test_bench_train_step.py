"""benchmarks/bench_train_step.py: one tiny run writes tidy numeric rows; bad flags give one line and exit 2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_step_per_operator_beside_bilinear(bench, tmp_path):
    out = tmp_path / "record.json"
    bench.main(["--operators", "sapa", "--scales", "4", "--iters", "1", "--warmup", "0", "--out", str(out)])
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert record["environment"]["threads"] >= 1
    assert all(isinstance(r["value"], float) and r["value"] >= 0 for r in rows)
    step = {(r["operator"], r["metric"], r["statistic"]): r["value"] for r in rows if r["kind"] == "step"}
    assert step[("bilinear", "ratio_to_bilinear", "value")] == 1.0
    ratio = step[("sapa", "time", "median")] / step[("bilinear", "time", "median")]
    assert step[("sapa", "ratio_to_bilinear", "value")] == pytest.approx(ratio)
    op = {(r["metric"], r["statistic"]): r["value"] for r in rows if r["kind"] == "operator"}
    # SAPA at x4 in the tiny plain model (x 64 x 8 x 8, guide 32 x 32 x 32, batch 8): about 0.03 GMAC.
    assert 0.01 < op[("gmacs", "value")] < 0.1
    assert op[("gflops", "value")] == pytest.approx(6 * op[("gmacs", "value")] / (op[("time", "median")] / 1e3))
    assert "x4   step  sapa" in out.with_suffix(".txt").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--operators", "nope"], "unknown operator(s) nope"),
        (["--scales", "2"], "supports scales 4, 8 and 16"),
        (["--iters", "0"], "--iters and --threads must be >= 1"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
