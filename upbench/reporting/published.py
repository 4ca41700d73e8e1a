"""Published numbers of the paper settings, shown beside upbench's own in reports of those suites.

Every number is copied from the named README; whether it is the best of the periodic evaluations
or the final checkpoint was read from the training log the README links (mmseg evaluates every
16k iterations; ``selection`` says which one the README reports). upbench reports the final
checkpoint. Not included: ReSFU (no mIoU found in its README or repository), DySample (its README
has no SegFormer table), and tiny-smart/sapa's journal table (not readable in the stored copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

FADE = "poppinace/fade@e4de4db README.md (Semantic Segmentation table)"
SAPA = "poppinace/sapa@5530ef8 README.md (Segformer B1 column)"


@dataclass(frozen=True)
class Published:
    """One published result: metric values in percent, with source and checkpoint selection."""

    operator: str
    miou: float
    biou: float | None
    source: str
    selection: str


def _fade_selection(best_iter: int, final: float) -> str:
    if best_iter == 160000:
        return "final checkpoint (160k, also the best of 10 evaluations)"
    return f"best of 10 evaluations ({best_iter // 1000}k; final 160k: {final:.2f})"


#: suite name -> published rows (SegFormer-B1, ADE20K, 512x512, 160k, batch 16 on one GPU).
PUBLISHED: dict[str, list[Published]] = {
    "paper_segformer_b1_cascade": [
        Published("bilinear", 41.68, 27.80, FADE, _fade_selection(144000, 41.65)),
        Published("carafe", 42.82, 29.84, FADE, _fade_selection(144000, 42.78)),
        Published("fade", 44.41, 32.65, FADE, _fade_selection(144000, 44.25)),
        Published("fade_lite", 43.49, 31.55, FADE, _fade_selection(160000, 43.49)),
        Published("sapa_i", 43.05, None, SAPA, "not stated (the README links no log for this row)"),
        Published("sapa", 43.20, None, SAPA, "not stated (the README links no log for this row)"),
        Published("sapa_g", 44.39, None, SAPA, "not stated (the README links no log for this row)"),
    ],
}


def _ours(train: pd.DataFrame, operator: str, metric: str) -> float | None:
    if train.empty:
        return None
    rows = train[(train["label"] == operator) & (train["metric"] == metric)]
    return None if rows.empty else float(rows["mean"].iloc[0]) * 100


def published_section(suite: str, train: pd.DataFrame) -> list[str]:
    """Markdown lines of the "Published numbers" section of ``suite`` (empty for other suites)."""
    rows = PUBLISHED.get(suite, [])
    if not rows:
        return []
    lines = [
        "## Published numbers",
        "",
        "| operator | mIoU published (%) | mIoU upbench (%) | gap | bIoU published (%) | BIoU upbench (%) | "
        "published checkpoint | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in rows:
        miou, biou = _ours(train, p.operator, "mIoU"), _ours(train, p.operator, "BIoU")
        gap = "—" if miou is None else f"{miou - p.miou:+.2f}"
        lines.append(
            f"| {p.operator} | {p.miou:.2f} | {'—' if miou is None else f'{miou:.2f}'} | {gap} | "
            f"{'—' if p.biou is None else f'{p.biou:.2f}'} | {'—' if biou is None else f'{biou:.2f}'} | "
            f"{p.selection} | {p.source} |"
        )
    lines += [
        "",
        "upbench: final checkpoint, mean over seeds. The code behind the published bIoU is not public "
        "(tiny-smart/dysample#18); upbench's BIoU is Boundary IoU (Cheng et al. 2021), so the two may differ "
        "by definition, not only by training.",
        "",
    ]
    return lines
