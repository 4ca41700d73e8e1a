"""Where audits are kept: one JSON file per key (dataset, resolved options, settings, version).

Two places are read, in order: the user cache (``$UPBENCH_CACHE/audit``, default
``~/.cache/upbench/audit``), which ``python -m upbench audit`` and the reports write, and the
audits shipped with upbench (``upbench/audit/known/``: those of the built-in suites' datasets,
copied from the committed ``reports/audit`` run, so that a report of a shipped suite shows its
audit without recomputing it). A file that cannot be read is ignored with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from upbench.audit.audit import Audit

SHIPPED = Path(__file__).with_name("known")


def user_cache() -> Path:
    """The folder audits are written to (``$UPBENCH_CACHE/audit`` or ``~/.cache/upbench/audit``)."""
    root = os.environ.get("UPBENCH_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "upbench") / "audit"


def lookup(key: str) -> Audit | None:
    """The cached audit of ``key`` (user cache first, then the shipped ones), or ``None``."""
    for folder in (user_cache(), SHIPPED):
        path = folder / f"{key}.json"
        if path.is_file():
            try:
                return Audit.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError) as err:
                warnings.warn(f"ignoring unreadable audit cache file {path}: {err}", stacklevel=2)
    return None


def store(audit: Audit) -> Path | None:
    """Write ``audit`` to the user cache (atomically); ``None`` (with a warning) if it cannot be written."""
    folder = user_cache()
    path = folder / f"{audit.key}.json"
    tmp = folder / f".{audit.key}.json.tmp{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(audit.to_json(), indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not cache the audit in {folder}: {err}", stacklevel=2)
        return None
    return path
