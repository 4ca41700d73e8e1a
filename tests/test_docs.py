"""The docs say what the code does: cited notes exist, times agree, no wording tied to one machine."""

from __future__ import annotations

import re
from pathlib import Path

import upbench
from upbench.suite import describe_builtin_suites

REPO = Path(__file__).resolve().parent.parent


def test_every_note_id_that_code_cites_is_in_the_docs() -> None:
    notes = (REPO / "docs" / "resfu_official.md").read_text()
    documented = set(re.findall(r"^\| (B\d+) \|", notes, flags=re.M))
    assert documented == {f"B{i}" for i in range(1, 11)}
    info = upbench.operator_info("resfu")
    cited = set(re.findall(r"\bB\d+\b", " ".join([*info.deviations, *info.notes])))
    assert cited and cited <= documented
    assert "docs/resfu_official.md" in " ".join(info.deviations)
    for path in [*REPO.glob("operators/*.py"), *REPO.glob("upbench/**/*.py"), *REPO.glob("notebooks/*.ipynb")]:
        assert "peers.md" not in path.read_text(), f"{path} cites a note that is not in the repository"


def test_suite_times_agree_between_readme_and_suites() -> None:
    readme = (REPO / "README.md").read_text()
    described = dict(describe_builtin_suites())
    quoted = re.findall(r"python -m upbench run ([\w-]+)\s+# (~?[\d.]+ (?:h|min)) on 2 CPU cores", readme)
    assert {name for name, _ in quoted} >= {"ratio-cpu", "ablation-cpu"}
    for name, time in quoted:
        # "~" marks an estimate, in both places
        assert f"{time} on 2 CPU cores" in described[name], (name, time, described[name])


def test_readme_has_no_wording_that_only_makes_sense_on_one_machine() -> None:
    readme = (REPO / "README.md").read_text().lower()
    for phrase in ("our machines", "local wheel", "peers.md"):
        assert phrase not in readme
