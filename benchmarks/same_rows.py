"""Do two runs of the same suite give the same results? Rows, per-image records and cell configs.

    python benchmarks/same_rows.py RUN_A RUN_B

Used to check that a refactor changes no number: run the same suite (e.g. ``python -m upbench
run quick --out RUN``) at the two commits, then compare. Rows are matched by ``(cell_id, metric,
statistic)`` and every column is compared exactly (NaN equals NaN), except what depends on the
machine or the clock: the ``time``, ``git_commit``, ``hostname`` and ``upbench_version`` columns,
and the values of timing and memory rows (``latency_*``, ``peak_memory*``, ``train_time``, and the
wall time of each ``cell`` row, whose status and row count are still compared). For every cell
both runs have, ``config.json`` and ``per_image.parquet`` (columns in any order) must be equal.
Exit status 0 when everything matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

VOLATILE_COLUMNS = ("time", "git_commit", "hostname", "upbench_version")
VOLATILE_VALUES = ("latency_", "peak_memory", "train_time", "cell")
KEY = ("cell_id", "metric", "statistic")


def rows_of(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``results.jsonl`` in file order."""
    with open(run_dir / "results.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without the machine- and clock-dependent parts."""
    out = {k: v for k, v in row.items() if k not in VOLATILE_COLUMNS}
    metric = str(row.get("metric", ""))
    if metric == "cell" or metric.startswith(VOLATILE_VALUES):
        out.pop("value", None)
    return out


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    """One line per difference between the rows of two runs."""
    index_a = {tuple(r.get(k) for k in KEY): comparable(r) for r in a}
    index_b = {tuple(r.get(k) for k in KEY): comparable(r) for r in b}
    problems = [f"only in A: {k}" for k in sorted(set(index_a) - set(index_b), key=str)]
    problems += [f"only in B: {k}" for k in sorted(set(index_b) - set(index_a), key=str)]
    for key in sorted(set(index_a) & set(index_b), key=str):
        ra, rb = index_a[key], index_b[key]
        for column in sorted(set(ra) | set(rb)):
            if not same_value(ra.get(column), rb.get(column)):
                problems.append(f"{key} {column}: {ra.get(column)!r} != {rb.get(column)!r}")
    return problems


def compare_cells(run_a: Path, run_b: Path, cell_ids: set[str]) -> list[str]:
    """Differences of ``config.json`` and ``per_image.parquet`` of the cells both runs have."""
    problems = []
    for cell_id in sorted(cell_ids):
        da, db = run_a / "cells" / cell_id, run_b / "cells" / cell_id
        ca, cb = da / "config.json", db / "config.json"
        if ca.is_file() != cb.is_file():
            problems.append(f"{cell_id}: config.json in one run only")
        elif ca.is_file() and json.loads(ca.read_text()) != json.loads(cb.read_text()):
            problems.append(f"{cell_id}: config.json differs")
        pa, pb = da / "per_image.parquet", db / "per_image.parquet"
        if pa.is_file() != pb.is_file():
            problems.append(f"{cell_id}: per_image.parquet in one run only")
        elif pa.is_file():
            fa, fb = pd.read_parquet(pa), pd.read_parquet(pb)
            if set(fa.columns) != set(fb.columns):
                problems.append(f"{cell_id}: per_image.parquet columns {sorted(fa.columns)} != {sorted(fb.columns)}")
            elif not fa.equals(fb[list(fa.columns)]):
                problems.append(f"{cell_id}: per_image.parquet values differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args(argv)
    a, b = rows_of(args.run_a), rows_of(args.run_b)
    problems = compare_rows(a, b)
    cells = {r["cell_id"] for r in a} & {r["cell_id"] for r in b}
    problems += compare_cells(args.run_a, args.run_b, cells)
    order_a = [tuple(r.get(k) for k in KEY) for r in a]
    order_b = [tuple(r.get(k) for k in KEY) for r in b]
    measured = sum(1 for r in a if "value" in comparable(r))
    print(f"A: {len(a)} rows, B: {len(b)} rows, {len(cells)} cells in both; {measured} values compared exactly")
    print(f"row order: {'the same' if order_a == order_b else 'different'}")
    for line in problems:
        print(line)
    print("identical" if not problems else f"{len(problems)} difference(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
