"""The encoder weights shipped with upbench (``upbench/weights/``) and ``pretrained = "shipped:..."``.

A suite's ``[model] pretrained`` is either a checkpoint file or ``"shipped:<dataset>"``: the
encoder pretrained on that generated dataset for each cell's architecture and preset (see
:mod:`upbench.pretraining`). ``upbench/weights/manifest.json`` lists, per dataset and
``architecture/preset``, the file, its SHA-256, and the record of the run that made it (command,
settings, loss, CPU time, torch build, thread count, checksums of the weights after the first
steps); ``docs/pretrained.md`` says how to regenerate them.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from upbench.errors import ConfigError

PREFIX = "shipped:"
WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = WEIGHTS / "manifest.json"


@lru_cache(maxsize=1)
def manifest() -> dict[str, dict[str, dict[str, Any]]]:
    """``{dataset: {"architecture/preset": entry}}`` of the shipped weights (empty if none)."""
    if not MANIFEST.is_file():
        return {}
    return json.loads(MANIFEST.read_text())


def is_shipped(value: str) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def shipped_entry(value: str, architecture: str, preset: str) -> dict[str, Any]:
    """The manifest entry ``value`` (``"shipped:<dataset>"``) names for ``architecture``/``preset``."""
    dataset = value[len(PREFIX) :]
    table = manifest()
    if dataset not in table:
        known = ", ".join(PREFIX + d for d in sorted(table)) or "none"
        raise ConfigError(f"model.pretrained = {value!r}: no shipped encoders for '{dataset}' (shipped: {known})")
    key = f"{architecture}/{preset}"
    if key not in table[dataset]:
        have = ", ".join(sorted(table[dataset]))
        raise ConfigError(
            f"model.pretrained = {value!r}: no shipped encoder for the {architecture} preset '{preset}' "
            f"(shipped for {dataset}: {have})"
        )
    return table[dataset][key]


def resolve_pretrained(value: str, architecture: str, preset: str) -> Path:
    """The checkpoint file of ``model.pretrained`` for a cell (a shipped name or a path)."""
    if is_shipped(value):
        return WEIGHTS / shipped_entry(value, architecture, preset)["file"]
    return Path(value).expanduser()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
