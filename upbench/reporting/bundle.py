"""The run's results shipped inside a report folder, so that a committed report can be re-analysed.

:func:`ship_run` copies into ``<report>/run/`` what every analysis reads and nothing it does not:

    run/results.jsonl.gz         the rows the report shows (latest attempt of each current cell),
                                 gzip without a timestamp so that a re-run writes identical bytes
    run/environment.json         command, machine, versions (as in the run folder)
    run/suite.toml               the resolved suite
    run/cells/<id>/config.json   each cell's resolved configuration (how cells group into settings)
    run/cells/<id>/per_image.parquet   the per-image counts behind every interval
    run/cells/<id>/train_log.csv(.gz)  the learning curve (compressed above 256 KiB)

Saved models (``model.pt``) and checkpoints are left out: the qualitative panels and the mosaic
index need them and are skipped, with the reason, when a report is drawn from a shipped folder.

:func:`resolve_run_dir` is how ``upbench report``, ``upbench compare``, :func:`upbench.reporting.compare`
and the notebooks accept either a run folder or a report folder with ``run/``.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

from upbench.errors import UpbenchError

RUN_SUBDIR = "run"
RESULTS = "results.jsonl"
PACKED = "results.jsonl.gz"
CELL_FILES = ("config.json", "per_image.parquet")
TRAIN_LOG = "train_log.csv"
#: A train log above this many bytes is shipped gzip-compressed.
COMPRESS_ABOVE = 256 * 1024


def is_run_dir(path: Path) -> bool:
    """``path`` holds results (``results.jsonl``, or the compressed copy of a shipped run)."""
    return (path / RESULTS).is_file() or (path / PACKED).is_file()


def resolve_run_dir(path: str | Path) -> Path:
    """The folder with the results: ``path`` itself (a run folder) or ``path/run`` (a report folder
    that ships its run); else :class:`UpbenchError` saying what was expected."""
    path = Path(path)
    if is_run_dir(path):
        return path
    if is_run_dir(path / RUN_SUBDIR):
        return path / RUN_SUBDIR
    raise UpbenchError(
        f"{path} is not a run directory: it has no results.jsonl (run `upbench run` first) and no "
        f"{RUN_SUBDIR}/{PACKED} (a report folder that ships its run)"
    )


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as f:
        f.write(data)
    return buffer.getvalue()


def ship_run(run_dir: Path, out: Path) -> Path | None:
    """Copy the run's results into ``out/run`` (see the module); returns that folder, or None when
    ``run_dir`` already is it (a report re-drawn in place from its own shipped run)."""
    from upbench.results import ENVIRONMENT_FILE, latest_rows

    target = out / RUN_SUBDIR
    if target.resolve() == Path(run_dir).resolve():
        return None
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    rows = latest_rows(run_dir)
    text = "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in rows)
    (target / PACKED).write_bytes(_gzip(text.encode("utf-8")))
    for name in (ENVIRONMENT_FILE, "suite.toml"):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, target / name)
    for cell_id in sorted({str(r["cell_id"]) for r in rows}):
        source = run_dir / "cells" / cell_id
        dest = target / "cells" / cell_id
        for name in CELL_FILES:
            if (source / name).is_file():
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, dest / name)
        log = train_log_path(source)
        if log is not None:
            dest.mkdir(parents=True, exist_ok=True)
            data = log.read_bytes()
            if log.suffix == ".gz" or len(data) <= COMPRESS_ABOVE:
                (dest / log.name).write_bytes(data)
            else:
                (dest / (TRAIN_LOG + ".gz")).write_bytes(_gzip(data))
    return target


def train_log_path(cell_dir: Path) -> Path | None:
    """``cell_dir/train_log.csv``, or its compressed copy in a shipped run, or None."""
    for name in (TRAIN_LOG, TRAIN_LOG + ".gz"):
        if (cell_dir / name).is_file():
            return cell_dir / name
    return None
