"""Published numbers beside upbench's own in the reports of the paper suites."""

from __future__ import annotations

import pandas as pd

from upbench.reporting.published import PUBLISHED, published_section
from upbench.suite import load_suite


def test_published_rows_name_registered_operators_of_their_suite() -> None:
    for suite, rows in PUBLISHED.items():
        operators = load_suite(suite).config.operators
        assert [p.operator for p in rows] == [op for op in operators if any(p.operator == op for p in rows)]
        assert all(p.source and p.selection for p in rows)
    # poppinace/fade@e4de4db README: FADE 44.41 mIoU, 32.65 bIoU; its log's evaluations peak at 144k
    fade = next(p for p in PUBLISHED["paper_segformer_b1_cascade"] if p.operator == "fade")
    assert (fade.miou, fade.biou) == (44.41, 32.65) and "144k" in fade.selection


def test_section_shows_the_gap_to_our_final_checkpoint() -> None:
    train = pd.DataFrame(
        {"label": ["fade", "fade"], "metric": ["mIoU", "BIoU"], "mean": [0.4341, 0.30], "std": [0.0, 0.0]}
    )
    lines = published_section("paper_segformer_b1_cascade", train)
    row = next(line for line in lines if line.startswith("| fade |"))
    assert "| 44.41 | 43.41 | -1.00 | 32.65 | 30.00 |" in row
    assert next(line for line in lines if line.startswith("| carafe |")).count("—") == 3
    assert published_section("quick", train) == []
