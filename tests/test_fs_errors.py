"""Filesystem errors: one line naming the path and the problem (exit 2), never a traceback; a
failed write keeps the file it replaces and leaves no temporary file.

Tests may run as root, which ignores permission bits: unwritable files, read-only folders and full
disks are simulated by making ``open``/``os.open``/``os.fsync`` raise the error the kernel would.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_suites import tiny_ops_suite

from upbench import results
from upbench.cli import main
from upbench.files import describe_error

OPS = tiny_ops_suite("fs-ops")
RUN = ["--no-progress", "--no-report", "--device", "cpu"]


@pytest.fixture
def ops_file(tmp_path) -> Path:
    p = tmp_path / "ops.toml"
    p.write_text(OPS)
    return p


@pytest.fixture
def refuse(monkeypatch):  # noqa: ANN201 - returns the function below
    """``refuse(path, code)``: opening ``path``, or anything under it, raises ``OSError(code)``
    naming it, as the kernel does for an unreadable file (EACCES) or a read-only folder (EROFS)."""
    refused: dict[str, int] = {}
    real_open, real_os_open = builtins.open, os.open

    def check(file: object) -> None:
        if not isinstance(file, str | bytes | os.PathLike):
            return
        name = os.fsdecode(file)
        for prefix, code in refused.items():
            if name == prefix or name.startswith(prefix + os.sep):
                raise OSError(code, os.strerror(code), name)

    def fake_open(file, *args, **kwargs):  # noqa: ANN001, ANN202
        check(file)
        return real_open(file, *args, **kwargs)

    def fake_os_open(path, *args, **kwargs):  # noqa: ANN001, ANN202
        check(path)
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # pathlib's read_text and write_text
    monkeypatch.setattr(os, "open", fake_os_open)

    def add(path: Path, code: int = errno.EACCES) -> None:
        refused[str(path)] = code

    return add


@pytest.fixture
def full_disk(monkeypatch) -> None:
    """Every ``os.fsync`` fails as on a full disk (no file name: the error comes from a file handle)."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def _one_line(capsys) -> str:  # noqa: ANN001
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("upbench: error: "), lines
    return lines[0]


def _temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# --------------------------------------------------------------------------- the suite file
@pytest.mark.parametrize("problem", ["not utf-8", "unreadable"])
def test_a_suite_file_that_cannot_be_read_is_one_line_naming_it(problem, tmp_path, refuse, capsys) -> None:
    suite = tmp_path / "suite.toml"
    if problem == "not utf-8":
        suite.write_bytes(OPS.replace("bilinear", "bil\xe9near").encode("latin-1"))
        expected = "is not UTF-8 text (byte 0xe9"
    else:
        suite.write_text(OPS)
        refuse(suite)
        expected = "cannot be read: Permission denied"
    assert main(["plan", str(suite)]) == 2
    line = _one_line(capsys)
    assert f"suite file '{suite}'" in line and expected in line


# --------------------------------------------------------------------------- the run folder
@pytest.mark.parametrize("problem", ["a file", "under a file", "name too long"])
def test_an_out_folder_that_cannot_be_made_is_one_line(problem, ops_file, tmp_path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    out, expected = {
        "a file": (afile, f"--out {afile}: is a file, not a folder"),
        "under a file": (afile / "run", f"{afile / 'run'}: Not a directory (ENOTDIR)"),
        "name too long": (tmp_path / ("r" * 300), "File name too long (ENAMETOOLONG)"),
    }[problem]
    assert main(["run", str(ops_file), "--out", str(out), *RUN]) == 2
    line = _one_line(capsys)
    assert expected in line and len(line) < 300  # a long name is shortened
    assert afile.read_text() == "not a folder\n"


def test_a_read_only_run_folder_is_one_line(ops_file, tmp_path, refuse, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    refuse(out, errno.EROFS)
    assert main(["run", str(ops_file), "--out", str(out), *RUN]) == 2
    line = _one_line(capsys)
    assert f"{out / '.lock'}: Read-only file system (EROFS); use a writable folder" in line
    assert os.listdir(out) == []


def test_an_unreadable_results_file_is_one_line_and_runs_nothing(ops_file, tmp_path, refuse, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / results.RESULTS_FILE).write_text("")
    refuse(out / results.RESULTS_FILE)
    assert main(["run", str(ops_file), "--out", str(out), *RUN]) == 2
    assert f"{out / results.RESULTS_FILE}: Permission denied (EACCES)" in _one_line(capsys)
    assert not (out / "cells").exists() and not (out / ".lock").exists()  # nothing ran; the lock is released


def test_an_unreadable_per_image_table_names_its_path(tmp_path, monkeypatch) -> None:
    from upbench.metrics import per_image

    path = tmp_path / per_image.FILE_NAME

    def arrow_error(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - Arrow's errors name no file
        raise OSError("Failed to open local file. Detail: [errno 13] Permission denied")

    monkeypatch.setattr(per_image.pd, "read_parquet", arrow_error)
    with pytest.raises(OSError) as caught:
        per_image.read_per_image(path)
    assert caught.value.filename == str(path)
    assert describe_error(caught.value).startswith(f"{path}: Failed to open local file")


# --------------------------------------------------------------------------- a full disk
def _writers() -> dict:
    from upbench.metrics.per_image import write_per_image
    from upbench.training.checkpoint import save_checkpoint
    from upbench.training.train_log import write_train_log

    cell_rows = [results.row("m", 1.0, "x"), results.row(results.CELL_METRIC, 1.0, "s")]
    return {
        "checkpoints/last.pt": lambda d: save_checkpoint(d / "checkpoints", {"w": torch.zeros(100)}),
        "rows.jsonl": lambda d: results.write_cell_rows(d, [{"cell_id": "c", **r} for r in cell_rows]),
        "cells.json": lambda d: results.write_current_cells(d, ["c"], 1),
        "environment.json": lambda d: results.write_environment(d, {"host": "h"}),
        "train_log.csv": lambda d: write_train_log(d / "train_log.csv", [(1, 0.5), (2, 0.25)], []),
        "per_image.parquet": lambda d: write_per_image(d / "per_image.parquet", pd.DataFrame({"image": [0]})),
    }


@pytest.mark.parametrize("name", list(_writers()))
def test_a_write_on_a_full_disk_keeps_the_old_file_names_it_and_leaves_no_temporary_file(
    name, tmp_path, monkeypatch
) -> None:
    write = _writers()[name]
    write(tmp_path)  # the version a failed write must keep
    before = (tmp_path / name).read_bytes()

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as caught:
        write(tmp_path)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / name)
    assert (tmp_path / name).read_bytes() == before
    assert _temporary_files(tmp_path) == []


def test_torch_save_on_a_full_disk_raises_the_os_error_not_torchs_runtime_error(tmp_path, monkeypatch) -> None:
    from upbench import files
    from upbench.training.checkpoint import save_checkpoint

    class FullDisk:
        """A file that takes 100 bytes, then fails as a full disk does."""

        def __init__(self, fh: io.BufferedWriter) -> None:
            self.fh, self.written = fh, 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 100:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(data)

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(self.fh, name)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

    real_open = builtins.open
    monkeypatch.setattr(files, "open", lambda path, mode: FullDisk(real_open(path, mode)), raising=False)
    with pytest.raises(OSError) as caught:  # torch raises RuntimeError("unexpected pos ...") from it
        save_checkpoint(tmp_path, {"w": torch.zeros(10_000)})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "last.pt")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("problem", ["full disk", "unwritable cell file"])
def test_a_full_disk_or_an_unwritable_cell_file_stops_the_run_with_one_line(
    problem, ops_file, tmp_path, monkeypatch, refuse, capsys
) -> None:
    from upbench.cell import run as cell_run
    from upbench.metrics.per_image import FILE_NAME, write_per_image
    from upbench.training.checkpoint import save_checkpoint

    def cell_that_writes(config, cell_dir, device, progress):  # noqa: ANN001, ANN202
        if problem == "full disk":
            monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
            save_checkpoint(Path(cell_dir) / "checkpoints", {"w": torch.zeros(100)})
        else:
            refuse(Path(cell_dir) / f".{FILE_NAME}.tmp{os.getpid()}")
            write_per_image(Path(cell_dir) / FILE_NAME, pd.DataFrame({"image": [0]}))
        return []

    monkeypatch.setitem(cell_run.KINDS, "ops", cell_that_writes)
    out = tmp_path / "run"
    assert main(["run", str(ops_file), "--out", str(out), *RUN]) == 2
    line = _one_line(capsys)
    if problem == "full disk":
        assert "checkpoints/last.pt: No space left (ENOSPC); free some space and run the same command again" in line
    else:
        assert f"{FILE_NAME}: Permission denied (EACCES)" in line
    assert _temporary_files(out) == []
    assert not list(out.rglob("error.txt"))  # not a failed cell: the run stops, and resumes later
    assert results.read_rows(out) == [] and not (out / ".lock").exists()


def test_a_cell_error_that_cannot_be_written_leaves_no_empty_error_file(tmp_path, monkeypatch, full_disk) -> None:
    from upbench.cell import run as cell_run

    def failing(config, cell_dir, device, progress):  # noqa: ANN001, ANN202
        raise ValueError("the cell's own error")

    monkeypatch.setitem(cell_run.KINDS, "ops", failing)
    monkeypatch.setattr(cell_run, "write_config", lambda cell_dir, config: None)
    with pytest.raises(OSError) as caught:
        cell_run.run_cell({"kind": "ops"}, tmp_path, device="cpu", progress=False)
    assert caught.value.filename == str(tmp_path / "error.txt") and caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []
