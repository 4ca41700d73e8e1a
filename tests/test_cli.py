"""The command line: every subcommand has --help; bad input exits 2 with one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from upbench.cli import main

SUBCOMMANDS = ["list", "info", "suites", "plan", "run", "report", "compare"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "upbench", *args], capture_output=True, text=True, timeout=120)


def test_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:6] == ["name", "family", "guided", "learnable", "any", "size"]
    for name in ("bilinear", "deconv", "nearest", "pixelshuffle"):
        assert f"\n{name} " in out
    anyup = next(li for li in out.splitlines() if li.startswith("anyup "))
    assert anyup.split()[:5] == ["anyup", "task-agnostic", "yes", "yes", "yes"]  # any output size


def test_tables_fit_100_columns(capsys: pytest.CaptureFixture[str]) -> None:
    from upbench.registry import list_operators

    commands = [["list"], ["suites"], *(["info", n] for n in list_operators())]
    commands += [["plan", s] for s in ("quick", "ratio-cpu", "ablation-cpu", "cost-cpu")]
    for args in commands:
        assert main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert max(len(li) for li in lines) <= 100, (args, max(lines, key=len))


def test_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "deconv"]) == 0
    out = capsys.readouterr().out
    assert "Deconv ('deconv')" in out and "kernel_size = None" in out and "deviations" in out


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_on_every_subcommand(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert f"usage: upbench {sub}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["info", "resfuu"], "unknown operator 'resfuu'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["list", "--kind", "odd"], "invalid choice: 'odd'"),
        (["report", "/nonexistent/run"], "is not a run directory"),
    ],
)
def test_bad_arguments_exit_2_one_line(args: list[str], expected: str) -> None:
    proc = _run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
