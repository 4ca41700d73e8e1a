"""pyproject lists every sub-package (setuptools is given an explicit list) and no heavy dependency."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "upbench").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert {"upbench_operators", "upbench_suites"} <= listed


def test_no_hard_dependency_on_torchvision_or_timm() -> None:
    deps = " ".join(_pyproject()["project"]["dependencies"]).lower()
    assert "torchvision" not in deps and "timm" not in deps
    assert "timm" in _pyproject()["project"]["optional-dependencies"]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.strip().startswith("python3 -m venv")]
    assert len(commands) == 2, commands
    assert all("pip install torch==2.13.0" in c for c in commands)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_report_page_assets_are_package_data() -> None:
    data = _pyproject()["tool"]["setuptools"]["package-data"]["upbench.reporting"]
    assets = sorted((ROOT / "upbench" / "reporting" / "assets").iterdir())
    assert [p.name for p in assets] == ["report.css", "report.js"]
    assert {"assets/*.css", "assets/*.js"} == set(data)
    extras = _pyproject()["project"]["optional-dependencies"]
    assert extras["tensorboard"] == ["tensorboard>=2.14"]  # optional: never in the core install
    assert not any("tensorboard" in d for d in _pyproject()["project"]["dependencies"])
