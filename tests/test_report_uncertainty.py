"""End to end on a tiny real run: the report has the control rows, stem-inclusive operator costs,
intervals, tie groups, the BF tolerance and seed agreement."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from tiny_suites import TINY_TRAIN_SUITE

from upbench import driver, results
from upbench.reporting import compare, write_report
from upbench.suite import load_suite

pytestmark = pytest.mark.usefixtures("one_thread")

SUITE = (
    TINY_TRAIN_SUITE.replace(
        'operators = ["bilinear", "resfu"]', 'operators = ["bilinear", "resfu", "guided_bilinear"]'
    )
    .replace("seeds = [0]", "seeds = [0, 1]")
    .split('[[architectures]]\nname = "hierarchical"')[0]
    + "[train]\niters = 2\nbatch_size = 2\nwarmup_iters = 1\n\n[profile]\nwarmup = 1\niters = 3\n"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("uncertainty")
    (tmp / "suite.toml").write_text(SUITE)
    run_dir = tmp / "run"
    summary = driver.run_suite(load_suite(tmp / "suite.toml"), out_dir=run_dir, device="cpu", progress=False)
    assert summary.failed == 0, summary.describe()
    out = write_report(run_dir, tmp / "report", n_images=1)
    return run_dir, out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_report_table_has_control_costs_intervals_and_ties(report) -> None:  # noqa: ANN001
    run_dir, out = report
    text = (out / "report.md").read_text()
    assert "How to read the tables" in text
    table = text[text.index("### plain / direct / x4") : text.index("## Did every operator learn?")]
    blocks = [b for b in table.split("\n\n") if b.startswith("| ")]
    main, vs_bilinear, vs_control = ({(c := _cells(li))[0]: c for li in b.splitlines()} for b in blocks)
    header = main["operator"]
    rows = {k: v for k, v in main.items() if k not in ("operator", "---")}
    assert {"bilinear", "resfu", "guided_bilinear"} <= set(rows)
    assert all(len(li) < 120 for b in blocks for li in b.splitlines())
    miou = header.index("mIoU (%)")
    assert re.fullmatch(r"(\*\*)?\d+\.\d(\*\*)?(±\d+\.\d)?", rows["resfu"][miou])  # compact: mean±std
    # intervals on every difference to bilinear; resfu (guided) also against the control
    assert vs_bilinear["operator"][1] == "Δ mIoU" and set(vs_bilinear) - {"operator", "---|"} >= {"resfu"}
    for label in ("resfu", "guided_bilinear"):
        assert re.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]\*?", vs_bilinear[label][1])
    assert "resfu" in vs_control and "guided_bilinear" not in vs_control and "bilinear" not in vs_control
    assert "bilinear" not in vs_bilinear
    assert sum(rows[lab][miou].startswith("**") for lab in rows) >= 1  # a tie group, at least the best
    # op. params include the plain model's image stem: params beyond bilinear's all belong to the operator
    df = results.read_results(run_dir)
    point = df[df["statistic"].isin(["value", "median"])]
    value = point.groupby(["operator", "metric"])["value"].mean()
    for op in ("resfu", "guided_bilinear"):
        assert value[(op, "operator_params")] == value[(op, "params")] - value[("bilinear", "params")]
        shown = float(rows[op][header.index("op. params (K)")].strip("*").split()[0])
        assert shown == pytest.approx(value[(op, "operator_params")] / 1e3, abs=0.05)
    # latency and memory as median [q1–q3]
    latency = rows["bilinear"][header.index("latency (ms)")]
    assert re.fullmatch(r"(\*\*)?\d+(\.\d+)?(\*\*)? \[\d+(\.\d+)?–\d+(\.\d+)?\]", latency), latency
    # captions: BF tolerance, guide passthrough, seed agreement (2 seeds)
    assert "BF tolerance: 1.00 px" in table
    assert "Guide passthrough (output can carry guide content directly): guided_bilinear; guided, only " in table
    assert "weighting LR features: resfu." in table
    assert re.search(r"Kendall tau .*: mIoU [+-]\d\.\d\d, BF [+-]\d\.\d\d", table)


def test_report_writes_the_comparison_and_it_matches_the_api(report) -> None:  # noqa: ANN001
    run_dir, out = report
    saved = pd.read_csv(out / "tables" / "compare_bilinear.csv")
    again = compare(run_dir)
    assert len(saved) == len(again) == 3 * 3
    merged = saved.merge(again, on=["setting_id", "operator", "metric"], suffixes=("", "_api"))
    assert (merged["ci_low"] - merged["ci_low_api"]).abs().max() < 1e-9
    control = pd.read_csv(out / "tables" / "compare_guided_bilinear.csv")
    row = control[(control["operator"] == "guided_bilinear") & (control["metric"] == "mIoU")].iloc[0]
    assert (row["diff"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0)


def test_report_says_what_it_cannot_separate(report) -> None:  # noqa: ANN001
    run_dir, out = report
    text = (out / "report.md").read_text()
    frame = compare(run_dir)
    same = frame[(frame["operator"] != "bilinear") & ~frame["significant"].astype(bool)]
    lines = [line for line in text.splitlines() if line.startswith("Not separated from bilinear")]
    if same.empty:
        assert not lines
    else:
        assert len(lines) == 1
        for r in same.itertuples():
            part = next(p for p in lines[0].split(": ", 1)[1].split("; ") if p.startswith(f"{r.metric}:"))
            assert r.operator in part.split(": ")[1].rstrip(".").split(", ")
