"""benchmarks/same_rows.py: two runs with the same numbers are identical; any other number is named."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from synthetic_run import write_synthetic_run

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "same_rows.py"


def _script():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("same_rows", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rewrite(run: Path, change) -> None:  # noqa: ANN001
    path = run / "results.jsonl"
    rows = [change(json.loads(line)) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_clock_and_machine_do_not_count_but_every_number_does(tmp_path, capsys) -> None:
    same_rows = _script()
    a, b = tmp_path / "a", tmp_path / "b"
    write_synthetic_run(a)
    write_synthetic_run(b)
    _rewrite(
        b,
        lambda r: (
            {**r, "time": "2027-01-01T00:00:00+00:00", "hostname": "elsewhere"}
            | ({"value": r["value"] * 2} if r["metric"].startswith(("latency_", "peak_memory")) else {})
        ),
    )
    assert same_rows.main([str(a), str(b)]) == 0
    assert "identical" in capsys.readouterr().out
    _rewrite(b, lambda r: {**r, "value": 0.5} if (r["metric"], r["cell_id"]) == ("mIoU", "t0002") else r)
    assert same_rows.main([str(a), str(b)]) == 1
    assert "('t0002', 'mIoU', 'value') value: 0.41000000000000003 != 0.5" in capsys.readouterr().out
