"""report.html in a real browser: headless Chromium renders a freshly generated page and every
committed ``reports/*/report.html``; the test reads the rendered DOM (one row per operator, a click
on a column sorts the rows, the metric selector switches the interval plots), checks that the page
loads nothing from the network and that a screenshot is not blank.

Needs Chromium (Debian: ``apt-get install chromium``; ``.ci/run`` installs it). Outside CI the
browser tests skip with that reason when it is missing; in CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from browser import Browser, find_chromium
from tiny_suites import TINY_TRAIN_SUITE

from upbench import driver
from upbench.reporting import write_report
from upbench.reporting.bundle import resolve_run_dir
from upbench.reporting.load import load_rows
from upbench.suite import load_suite

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted(REPO.glob("reports/*/report.html"))
CHROMIUM = find_chromium()
OPERATORS = ["bilinear", "resfu", "guided_bilinear", "nearest"]
SUITE = (
    TINY_TRAIN_SUITE.replace('operators = ["bilinear", "resfu"]', f"operators = {OPERATORS!r}".replace("'", '"'))
    .replace("seeds = [0]", "seeds = [0, 1]")
    .split('[[architectures]]\nname = "hierarchical"')[0]
    + "[train]\niters = 4\nbatch_size = 2\nwarmup_iters = 1\n\n[profile]\nwarmup = 0\niters = 3\n"
)


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: no Chromium found (apt-get install chromium)")
        pytest.skip("no Chromium found (apt-get install chromium; .ci/run installs it)")
    with Browser(CHROMIUM) as b:
        yield b


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of a tiny real run: 4 operators, 2 seeds, plain x4, learning curves and panels."""
    import torch

    tmp = tmp_path_factory.mktemp("html")
    (tmp / "suite.toml").write_text(SUITE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = driver.run_suite(load_suite(tmp / "suite.toml"), out_dir=tmp / "run", device="cpu", progress=False)
        assert summary.failed == 0, summary.describe()
        return write_report(tmp / "run", tmp / "report", n_images=1)
    finally:
        torch.set_num_threads(threads)


ROWS = "Array.from(document.querySelectorAll('table.results'))[{i}].tBodies[0].rows"


def _labels(browser: Browser, i: int = 0) -> list[str]:
    return browser.evaluate(f"Array.from({ROWS.format(i=i)}).map(r => r.dataset.label)")


def _column_values(browser: Browser, i: int, metric: str) -> list[float | None]:
    return browser.evaluate(
        f"Array.from({ROWS.format(i=i)}).map(r => {{ const c = r.querySelector('td[data-metric=\"{metric}\"]');"
        " return c && c.dataset.v !== '' ? Number(c.dataset.v) : null; })"
    )


def _check_page(browser: Browser, page: Path, expected: dict[str, set[str]] | None = None) -> None:
    browser.open(page)
    assert browser.evaluate("document.documentElement.dataset.ready") == "1", "the page script did not run"
    # nothing from the network: the page, its inline data and nothing else
    assert all(u.startswith(("file:", "data:")) for u in browser.requests), browser.requests[:5]
    titles = browser.evaluate("Array.from(document.querySelectorAll('section.setting h3')).map(h => h.textContent)")
    counts = browser.evaluate(
        "Array.from(document.querySelectorAll('table.results')).map(t => t.tBodies[0].rows.length)"
    )
    assert titles and len(counts) == len(titles)
    for i, title in enumerate(titles):
        labels = _labels(browser, i)
        assert len(labels) == counts[i] == len(set(labels)), f"{title}: one row per operator"
        if expected is not None:
            assert set(labels) == expected[title]
    # sorting: a click on mIoU orders the rows best first, a second click reverses it
    if browser.evaluate("document.querySelector('section.setting th[data-metric=\"mIoU\"]') !== null"):
        before = _labels(browser)
        values = dict(zip(before, _column_values(browser, 0, "mIoU")))
        browser.evaluate("document.querySelector('section.setting th[data-metric=\"mIoU\"]').click()")
        after = _labels(browser)
        known = [lab for lab in after if values[lab] is not None]
        assert [values[lab] for lab in known] == sorted((values[lab] for lab in known), reverse=True)
        assert sorted(after) == sorted(before)
        browser.evaluate("document.querySelector('section.setting th[data-metric=\"mIoU\"]').click()")
        known = [lab for lab in _labels(browser) if values[lab] is not None]
        assert [values[lab] for lab in known] == sorted(values[lab] for lab in known)
    # the metric selector shows the interval plots of the chosen metric only
    if browser.evaluate("document.querySelector('section.setting select.metric') !== null"):
        browser.evaluate(
            "(() => { const s = document.querySelector('section.setting select.metric'); s.value = 'BF';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        shown = browser.evaluate(
            "Array.from(document.querySelector('section.setting').querySelectorAll('[data-fm]'))"
            ".filter(e => !e.classList.contains('hidden')).map(e => e.dataset.fm + '/' + e.dataset.fr)"
        )
        assert shown and set(shown) == {"BF/bilinear"}
    # figures are embedded and decoded
    broken = browser.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0
    # a screenshot that is not blank
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(browser.screenshot())).convert("L"), dtype=float)
    assert shot.shape[0] > 100 and shot.std() > 10, "blank screenshot"
    assert (shot < 128).mean() > 0.005, "no dark pixels (no text) in the screenshot"


def test_fresh_report_renders(browser: Browser, fresh: Path) -> None:
    rows = load_rows(fresh)
    labels = set(rows.loc[rows["kind"] == "train", "label"])
    assert labels == set(OPERATORS)
    _check_page(browser, fresh / "report.html", {"plain / direct / x4 (tiny, contextual)": labels})
    text = browser.evaluate("document.body.innerText")
    for section in ("Data and encoder", "Tables", "Did every operator learn?", "Learning curves", "Figures"):
        assert section in text
    # the tidy audit gets its own table only when the report is given one (test_audit_table_renders)
    assert browser.evaluate("document.querySelectorAll('table.audit').length") == 0
    # figures carry numbered captions; the qualitative panel is collapsible
    captions = browser.evaluate("Array.from(document.querySelectorAll('figcaption')).map(c => c.textContent)")
    assert captions and all(re.match(r"Figure \d+\. \S", c) for c in captions)
    assert any("95 % bootstrap interval" in c for c in captions)
    assert browser.evaluate("document.querySelectorAll('details figure img').length") >= 1
    # hover text carries the interval against bilinear
    tip = browser.evaluate(
        "document.querySelector('tr[data-label=\"resfu\"] td[data-metric=\"mIoU\"]').getAttribute('title')"
    )
    assert re.search(r"vs bilinear: [+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", tip)


def test_audit_table_renders(browser: Browser, fresh: Path, tmp_path: Path) -> None:
    import pandas as pd

    audit = pd.DataFrame(
        {"check": ["shortcut", "shortcut"], "ratio": [4, 8], "class": ["all", "all"], "metric": ["mIoU"] * 2,
         "value": [0.91, 0.87]}
    )  # fmt: skip
    out = write_report(resolve_run_dir(fresh), tmp_path / "again", n_images=1, audit=audit)
    browser.open(out / "report.html")
    rows = browser.evaluate("Array.from(document.querySelectorAll('table.audit tbody tr')).map(r => r.innerText)")
    assert len(rows) == 2 and "shortcut" in rows[0] and "0.91" in rows[0]
    assert "## Audit of the dataset" in (out / "report.md").read_text()


@pytest.mark.parametrize("page", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_report_renders(browser: Browser, page: Path) -> None:
    _check_page(browser, page)


def test_report_without_intervals_and_with_ops_tables_renders(browser: Browser, tmp_path: Path) -> None:
    from synthetic_run import write_synthetic_run

    write_synthetic_run(tmp_path / "run")  # no per-image records (no intervals), ops cells, a failed cell
    out = write_report(tmp_path / "run", tmp_path / "report")
    _check_page(browser, out / "report.html")
    assert browser.evaluate("document.querySelectorAll('section.setting select.metric').length") == 0
    ops = browser.evaluate(
        "Array.from(document.querySelectorAll('section.setting h3'))"
        ".filter(h => h.textContent.startsWith('ops')).length"
    )
    assert ops >= 1


def test_markdown_blocks_with_inner_newlines_convert_and_terminate() -> None:
    """A section written as one string (the audit block) is split into its lines; a line that no
    branch takes becomes a paragraph instead of stalling the converter."""
    from upbench.reporting.html import markdown_to_html

    block = "### Audit of the dataset\n\nsome text\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    out = markdown_to_html(["## Data", block, "##### five hashes", "- item"])
    assert out.count("<h3") == 1 and out.count("<h2") == 1 and "<td>1</td><td>2</td>" in out
    assert "<p>some text</p>" in out and "<p>##### five hashes</p>" in out and "<li>item</li>" in out
