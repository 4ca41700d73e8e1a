"""The report's "Data and encoder" section: what the run's dataset can answer (its audit) and which
encoder weights the cells started from, with the learning rate they were fine-tuned at."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

from upbench.audit.audit import Audit, AuditSettings, audit_dataset, audit_key
from upbench.audit.cache import lookup, store
from upbench.audit.table import markdown_section
from upbench.data import dataset_info
from upbench.errors import UpbenchError


def train_cell_configs(run_dir: Path) -> list[dict[str, Any]]:
    """The ``config.json`` of every train cell of the run (unreadable ones are skipped)."""
    out = []
    for path in sorted((run_dir / "cells").glob("*/config.json")):
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if config.get("kind") == "train" and isinstance(config.get("dataset"), dict):
            out.append(config)
    return out


def audit_request(dataset: dict[str, Any]) -> tuple[str, dict, dict, AuditSettings]:
    """``(name, train options, val options, settings)`` of the default audit of a run's dataset:
    its own options, with a generated dataset's counts set to what the audit draws."""
    name = dataset["name"]
    train, val = dict(dataset.get("train") or {}), dict(dataset.get("val") or {})
    settings = AuditSettings()
    if "count" in dataset_info(name).options:
        count = min(settings.count, int(val.get("count") or settings.count))
        settings = dataclasses.replace(settings, count=count)
        train["count"], val["count"] = settings.train_count, count
    return name, train, val, settings


def audit_command(name: str, train: dict, val: dict, settings: AuditSettings, root: str | None) -> str:
    """The ``python -m upbench audit`` command that computes (and caches) that audit."""
    words = ["python", "-m", "upbench", "audit", name]
    if root:
        words += ["--root", root]
    if "size" in val:
        words += ["--size", str(val["size"])]
    if settings.count != AuditSettings().count:
        words += ["--count", str(settings.count)]
    defaults = dataset_info(name).options
    for key, value in sorted(val.items()):
        default = json.dumps(defaults.get(key, object()), default=str)
        if key not in ("size", "count") and json.dumps(value, default=str) != default:
            words += ["--set", f"{key}={json.dumps(value)}"]  # only what differs from the default
    return shlex.join(words)


def run_audit(run_dir: Path, *, compute: bool = False) -> tuple[Audit | None, str]:
    """The audit of the run's dataset (cached; computed and cached if ``compute``) and its command."""
    configs = train_cell_configs(run_dir)
    if not configs:
        return None, ""
    dataset = configs[0]["dataset"]
    name, train, val, settings = audit_request(dataset)
    command = audit_command(name, train, val, settings, dataset.get("root") or None)
    audit = lookup(audit_key(name, train, val, settings))
    if audit is None and compute:
        audit = audit_dataset(
            name, root=dataset.get("root") or None, train_options=train, val_options=val, settings=settings
        )
        store(audit)
    return audit, command


def encoder_lines(configs: list[dict[str, Any]]) -> list[str]:
    """One line per distinct encoder start: weights (or random init) and the backbone's learning rate."""
    seen: dict[tuple, str] = {}
    for c in configs:
        model = c.get("model") or {}
        train = c.get("train") or {}
        lr = float(train.get("lr", 0))
        mult = 1.0
        for key, value in (train.get("custom_keys") or {}).items():
            if key in ("backbone", "backbone."):
                mult = float(value.get("lr_mult", 1.0))
        weights = model.get("pretrained") or "random initialisation (trained from scratch)"
        sha = model.get("sha256")
        text = (
            f"- {c['architecture']} / {c['preset']}: encoder from `{weights}`"
            + (f" (sha256 {sha[:12]})" if sha else "")
            + f"; encoder learning rate {lr * mult:g} (x{mult:g} of the base {lr:g})"
        )
        seen.setdefault((c["architecture"], c["preset"], weights, lr, mult), text)
    return list(seen.values())


def data_section(run_dir: Path, *, compute_audit: bool = False) -> list[str]:
    """Markdown lines of the section (empty for runs without train cells)."""
    configs = train_cell_configs(run_dir)
    if not configs:
        return []
    lines = ["## Data and encoder", "", *encoder_lines(configs), ""]
    try:
        audit, command = run_audit(run_dir, compute=compute_audit)
    except UpbenchError as err:
        return [*lines, f"Audit of the dataset: not available ({err}).", ""]
    if audit is None:
        return [
            *lines,
            f"Audit of the dataset: not computed yet; `{command}` computes it (then re-run the report).",
            "",
        ]
    return [*lines, markdown_section(audit, level=3), f"Audit command: `{command}`.", ""]
