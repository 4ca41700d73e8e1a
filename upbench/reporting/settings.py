"""Which cells belong together: a *setting* is a cell's full resolved configuration without its
seed and its operator (``label``, ``operator``, ``options``, ``resolved_options``).

Reports average seeds only within one (setting, operator label) and put operators side by side
only within one setting, so two cells that differ in anything but the seed (a ``--set`` override,
another dataset size, another training length) are never averaged as seeds. The configuration is
read from ``cells/<cell_id>/config.json`` (written by the cell); cells without it fall back to
their identity columns in ``results.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

#: Configuration keys that name the operator of a cell (the rows of a table), not its setting.
OPERATOR_KEYS = ("label", "operator", "options", "resolved_options")
#: Identity columns used when a cell has no ``config.json``.
FALLBACK_COLUMNS = ("kind", "architecture", "protocol", "preset", "dataset", "scale", "device")


def resolved_setting(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the seed (top level and ``train.seed``) and the operator keys."""
    out = {k: v for k, v in config.items() if k != "seed" and k not in OPERATOR_KEYS}
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k != "seed"}
    return out


def setting_id(setting: dict[str, Any]) -> str:
    """A short stable hash of a resolved setting."""
    text = json.dumps(setting, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def _cell_setting(run_dir: Path, cell_id: str, row: pd.Series) -> dict[str, Any]:
    path = run_dir / "cells" / str(cell_id) / "config.json"
    if path.is_file():
        return resolved_setting(json.loads(path.read_text(encoding="utf-8")))
    return {c: row.get(c) for c in FALLBACK_COLUMNS}


def attach_setting_ids(rows: pd.DataFrame, run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """``rows`` with a ``setting_id`` column, and ``setting_id -> resolved setting``."""
    run_dir = Path(run_dir)
    settings: dict[str, dict[str, Any]] = {}
    ids: dict[str, str] = {}
    for _, row in rows.drop_duplicates("cell_id").iterrows():
        setting = _cell_setting(run_dir, row["cell_id"], row)
        sid = setting_id(setting)
        settings[sid] = setting
        ids[row["cell_id"]] = sid
    rows = rows.assign(setting_id=rows["cell_id"].map(ids).fillna("none"))
    return rows, settings


def distinguishing_keys(settings: list[dict[str, Any]]) -> list[list[str]]:
    """For settings that share a title: the ``key=value`` texts in which each differs from the others."""
    flat = [_flatten(s) for s in settings]
    keys = sorted(set().union(*flat)) if flat else []
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    return [[f"{k}={f.get(k)}" for k in varying] for f in flat]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
