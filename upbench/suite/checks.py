"""The checks of a suite beyond types: cross-field rules, names that must exist, and what would
fail once cells run (datasets built, every distinct operator or model built on the meta device).
Each check returns one line per problem, so that ``plan`` and ``run`` list them all at once.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

from upbench import validation
from upbench.errors import ConfigError, UpbenchError
from upbench.suite.expansion import Cell, Suite, filter_problems
from upbench.suite.schema import PROBE_PROTOCOLS, PROTOCOLS, DatasetSpec, SuiteConfig


def config_problems(cfg: SuiteConfig) -> list[str]:
    """Cross-field checks that types alone cannot express (one line per problem)."""
    out: list[str] = []
    if not cfg.suite.name:
        out.append('suite.name is missing: every suite needs [suite] name = "..."')
    if cfg.suite.kind == "train" and not cfg.architectures:
        out.append("a train suite needs at least one [[architectures]] entry")
    for i, arch in enumerate(cfg.architectures):
        where = f"architectures[{i}]"
        if arch.name == "plain":
            bad = [s for s in arch.scales if s not in (4, 8, 16)]
            if bad or not arch.scales:
                out.append(f"{where}.scales = {arch.scales}: the plain architecture supports 4, 8 and 16")
        else:
            valid = PROBE_PROTOCOLS if arch.name == "probe" else PROTOCOLS
            bad = [p for p in arch.protocols if p not in valid]
            if bad or not arch.protocols:
                out.append(f"{where}.protocols = {arch.protocols}: choose from {', '.join(valid)}")
    for size in cfg.ops.sizes:
        if len(size) != 5:
            out.append(f"ops size {size} must be [batch, in_channels, lr_height, lr_width, guide_channels], all >= 1")
    for setting in [*cfg.ops.settings, *cfg.ops.gpu_settings]:
        if len(setting) != 6 or setting[5] < 2:
            out.append(
                f"ops setting {setting} must be [batch, in_channels, lr_height, lr_width, guide_channels, scale], "
                "all >= 1 and scale >= 2"
            )
    if not cfg.seeds:
        out.append("seeds must list at least one seed")
    repeated = sorted({s for s in cfg.seeds if cfg.seeds.count(s) > 1})
    if repeated:
        out.append(f"seeds = {cfg.seeds} repeats {', '.join(map(str, repeated))}: each seed may appear once")
    out += _train_problems(cfg)
    out += _pretrained_problems(cfg)
    if cfg.suite.kind == "train":
        out += _dataset_problems(cfg.dataset)
    out += _operator_problems(cfg)
    out += _executor_problems(cfg)
    return out


def _executor_problems(cfg: SuiteConfig) -> list[str]:
    """``executor.name`` names a registered executor."""
    from upbench.executors import executor_names

    names = executor_names()
    if cfg.executor.name in names:
        return []
    return [f"executor.name = {cfg.executor.name!r} is not valid; choose one of {', '.join(map(repr, names))}"]


def _pretrained_problems(cfg: SuiteConfig) -> list[str]:
    """``model.pretrained``: the file exists and its keys and shapes fit every architecture (checked now,
    not when the first cell starts)."""
    if not cfg.model.pretrained:
        return []
    from upbench.architectures.pretrained import check_pretrained
    from upbench.architectures.shipped import resolve_pretrained

    out = []
    for arch in cfg.architectures:
        try:
            path = resolve_pretrained(cfg.model.pretrained, arch.name, arch.preset)
            if not path.is_file():
                return [f"model.pretrained: checkpoint file '{path}' does not exist"]
            check_pretrained(path, arch.name, arch.preset)
        except ConfigError as err:
            out.append(str(err))
    return out


def _train_problems(cfg: SuiteConfig) -> list[str]:
    """Unknown ``[train]`` keys and values that :class:`TrainConfig` rejects; coerces ``cfg.train``."""
    from upbench.training import TrainConfig

    types_ = validation.field_types(TrainConfig)
    out = validation.unknown_keys(cfg.train, list(types_), "train")
    known = {k: v for k, v in cfg.train.items() if k in types_}
    coerced = {k: validation.validate(v, types_[k], f"train.{k}", out) for k, v in known.items()}
    if not out:
        cfg.train = coerced
    return out


def _dataset_problems(ds: DatasetSpec) -> list[str]:
    """Unknown dataset, missing or unexpected root, unknown dataset options."""
    from upbench.data import dataset_info

    try:
        info = dataset_info(ds.name)
    except ConfigError as err:
        return [f"dataset.name: {err}"]
    out = []
    if ds.root and not info.needs_root:
        out.append(f"dataset.root = {ds.root!r}: dataset '{ds.name}' is generated and takes no root")
    for split in ("train", "val"):
        out += validation.unknown_keys(getattr(ds, split), list(info.options), f"dataset.{split}")
    return out


def _operator_problems(cfg: SuiteConfig) -> list[str]:
    """Unknown operators, bad options, variant labels that are taken, exclude patterns that match nothing."""
    from upbench.errors import InvalidOptionError, UnknownOperatorError
    from upbench.registry import check_options, get_operator, list_operators

    out: list[str] = []
    for where, names in (
        ("operators", cfg.operators),
        ("options", list(cfg.options)),
        ("variants", [v.operator for v in cfg.variants]),
    ):
        for name in names:
            if name and not any(ch in name for ch in "*?["):
                try:
                    get_operator(name)
                except UnknownOperatorError as err:
                    out.append(f"{where}: {err}")
    checks = [(op, opts, f"options.{op}") for op, opts in cfg.options.items()]
    checks += [(v.operator, v.options, f"variants '{v.name}'") for v in cfg.variants]
    for op, opts, where in checks:
        try:
            check_options(get_operator(op), opts)
        except InvalidOptionError as err:
            out += [f"{where}: {line}" for line in str(err).splitlines()]
        except UnknownOperatorError:
            pass  # reported above
    taken = set(list_operators())
    labels: list[str] = []
    for v in cfg.variants:
        if not v.name or not v.operator:
            out.append("every [[variants]] entry needs name and operator")
        elif v.name in taken:
            out.append(f"variants: label '{v.name}' is the name of an operator; choose another label")
        elif v.name in labels:
            out.append(f"variants: label '{v.name}' is used twice")
        labels.append(v.name)
    included = [n for p in cfg.operators for n in list_operators(p)]
    for pattern in cfg.exclude_operators:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in included):
            out.append(f"exclude_operators: pattern '{pattern}' matches none of the suite's operators")
    return out


def _build_problems(ds: DatasetSpec) -> list[str]:
    """A missing root, then both splits built once (cheap: file lists or generators)."""
    from upbench.data import build_dataset, dataset_info

    if dataset_info(ds.name).needs_root and not ds.root:
        return [f"dataset.root is missing: dataset '{ds.name}' needs its folder (--set dataset.root=...)"]
    if ds.root and not Path(ds.root).exists():
        return [f"dataset.root = {ds.root!r} does not exist"]
    out = []
    for split in ("train", "val"):
        try:
            build_dataset(ds.name, split=split, root=ds.root or None, **getattr(ds, split))
        except Exception as exc:  # any failure here would fail every cell later
            out.append(f"dataset '{ds.name}' ({split} split, dataset.{split}): {_one_line(exc)}")
    return out


def _build_key(cell: Cell) -> dict[str, Any]:
    keep = ("operator", "resolved_options", "architecture", "protocol", "preset", "scale", "size")
    return {k: cell.config.get(k) for k in keep}


def _operator_build_problems(cell: Cell) -> list[str]:
    """Build the cell's operator (ops) or model (train) on the meta device; a rejection is a problem."""
    import torch

    c = cell.config
    where = f"operator '{c['label']}' ({c['architecture']}, {c['protocol']}, x{c['scale']})"
    try:
        with torch.device("meta"):
            if cell.kind == "ops":
                from upbench.registry import create_operator, operator_info

                b, ch, h, w, g = c["size"]
                if not operator_info(c["operator"]).supports_scale(c["scale"]):
                    return []  # profiled as a 'skipped' row, by design
                create_operator(c["operator"], ch, c["scale"], g, **c["options"])
            else:
                from upbench.cell import build_cell_model
                from upbench.data import dataset_info

                build_cell_model(c, dataset_info(c["dataset"]["name"]).num_classes)
    except Exception as exc:  # the same error would fail the cell when it runs
        return [f"{where}: {_one_line(exc)}"]
    return []


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{text}" if isinstance(exc, UpbenchError) else f"{type(exc).__name__}: {text}"


def cell_problems(suite: Suite, device: str = "cpu", *, check_data: bool = True) -> list[str]:
    """What would fail once cells run, checked now: ``--only`` filters, datasets that cannot be
    built (unless ``check_data`` is False: see :func:`data_problems`), operator configurations
    that the operator (or model) rejects. One line each."""
    try:
        cells = suite.all_cells(device)
    except UpbenchError as err:
        return [str(err)]
    out = filter_problems(cells, suite.only)
    selected = [c for c in cells if not out and c.matches(suite.only)] or cells
    if check_data:
        out += data_problems(suite)
    seen: set[str] = set()
    for cell in selected:
        key = json.dumps(_build_key(cell), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out += _operator_build_problems(cell)
    return list(dict.fromkeys(out))


def data_problems(suite: Suite) -> list[str]:
    """Whether a train suite's dataset is on disk and both splits build: what ``plan`` reports
    (as problems that would stop ``run``) without stopping, so that cells and costs show first."""
    return _build_problems(suite.config.dataset) if suite.config.suite.kind == "train" else []
