"""``python -m upbench audit DATASET``: options in, table out, files on disk, cache updated."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import tomllib

from upbench.audit.audit import COLUMNS, Audit, AuditSettings, audit_dataset, audit_key
from upbench.audit.cache import lookup, store
from upbench.audit.local import LocalSchedule
from upbench.audit.table import comparison_markdown, comparison_text, terminal_table
from upbench.data import dataset_info
from upbench.errors import ConfigError


def _option_value(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set expects OPTION=VALUE (a dataset option), got '{item}'")
    key, text = (part.strip() for part in item.split("=", 1))
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word is a string
    return key, value


def dataset_options(
    name: str, *, size: int | None, count: int, train_count: int, extra: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train and val options an audit of ``name`` builds its splits with (checked names)."""
    info = dataset_info(name)
    common: dict[str, Any] = dict(_option_value(item) for item in extra)
    if size is not None:
        if "size" not in info.options:
            raise ConfigError(f"dataset '{name}' has no size option (--size is for generated datasets)")
        common["size"] = size
    unknown = sorted(set(common) - set(info.options))
    if unknown:
        raise ConfigError(f"dataset '{name}' has no option {', '.join(unknown)}; options: {', '.join(info.options)}")
    train, val = dict(common), dict(common)
    if "count" in info.options:  # generated data: make exactly what is audited
        train["count"], val["count"] = train_count, count
    return train, val


def settings_from(args: argparse.Namespace) -> AuditSettings:
    """:class:`AuditSettings` from the command's options (defaults where not given)."""
    local = {k: v for k, v in {"rf": args.rf, "iters": args.local_iters}.items() if v is not None}
    base = AuditSettings()
    chosen = {k: v for k, v in {"count": args.count, "train_count": args.train_count}.items() if v is not None}
    if args.ratios:
        chosen["ratios"] = tuple(args.ratios)
    return dataclasses.replace(base, local=dataclasses.replace(LocalSchedule(), **local), **chosen)


def write_audit(audit: Audit, out: Path) -> None:
    """``audit.json`` (rows and meta), ``audit.csv`` (the tidy rows) and ``audit.txt`` (the table)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(audit.to_json(), indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r[k] is None else r[k]) for k in COLUMNS} for r in audit.rows)
    (out / "audit.csv").write_text(buffer.getvalue())
    (out / "audit.txt").write_text(terminal_table(audit) + "\n")


def _progress_bar(enabled: bool):  # noqa: ANN202 - a callback and its closer
    from tqdm.auto import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if not enabled:
            return
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, dynamic_ncols=True, leave=False)
        bar.n = done
        bar.refresh() if done == total or done % 50 == 0 else None

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def _audit_one(name: str, args: argparse.Namespace, settings: AuditSettings) -> Audit:
    train, val = dataset_options(
        name, size=args.size, count=settings.count, train_count=settings.train_count, extra=args.set
    )
    key = audit_key(name, train, val, settings)
    audit = None if args.no_cache else lookup(key)
    if audit is not None:
        print(f"(cached audit {key} of '{name}'; --no-cache recomputes it)")
        return audit
    update, close = _progress_bar(not args.no_progress)
    try:
        audit = audit_dataset(
            name, root=args.root, train_options=train, val_options=val, settings=settings, progress=update
        )
    finally:
        close()
    store(audit)
    return audit


def run_audit(args: argparse.Namespace) -> int:
    """The ``audit`` command (see :func:`upbench.cli.cmd_audit`): one dataset, or several side by side."""
    settings = settings_from(args)
    names = list(dict.fromkeys(args.dataset))
    for name in names:  # every bad option is reported before any work starts
        dataset_options(name, size=args.size, count=settings.count, train_count=settings.train_count, extra=args.set)
    audits = [_audit_one(name, args, settings) for name in names]
    if len(audits) == 1:
        out = Path(args.out) if args.out else Path("runs") / "audit" / f"{names[0]}-{audits[0].key}"
        write_audit(audits[0], out)
        print(terminal_table(audits[0]))
        print(f"\nwritten to {out}:\n  audit.json, audit.csv, audit.txt")
        return 0
    out = Path(args.out) if args.out else Path("runs") / "audit" / "-".join(names)
    for audit in audits:
        write_audit(audit, out / audit.meta["dataset"])
        print(terminal_table(audit) + "\n")
    (out / "report.md").write_text(comparison_markdown(audits, getattr(args, "command", None)))
    print(comparison_text(audits))
    print(f"\nwritten to {out}:\n  report.md, and audit.json, audit.csv, audit.txt per dataset")
    return 0
