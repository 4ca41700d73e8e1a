"""The checks of a suite beyond types: cross-field rules, names that must exist, and what would
fail once cells run (datasets built, every distinct operator or model built on the meta device,
what the run needs from the device: :mod:`upbench.suite.limits`). Each check returns one line per
problem, so that ``plan`` and ``run`` list them all at once, before the run folder exists.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from upbench import validation
from upbench.errors import ConfigError, UpbenchError
from upbench.suite import limits
from upbench.suite.expansion import Cell, Suite, filter_problems
from upbench.suite.schema import PROBE_PROTOCOLS, PROTOCOLS, DatasetSpec, SuiteConfig

#: A suite's name is its run folder (``runs/<name>``), so it is one plain path component: no
#: separator or ``..`` that would write elsewhere, no leading dot that would hide it.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def config_problems(cfg: SuiteConfig) -> list[str]:
    """Cross-field checks that types alone cannot express (one line per problem)."""
    out: list[str] = []
    if not cfg.suite.name:
        out.append('suite.name is missing: every suite needs [suite] name = "..."')
    elif not SAFE_NAME.fullmatch(cfg.suite.name):
        out.append(
            f"suite.name = {cfg.suite.name!r} is not valid: it names the run folder (runs/<name>), so it must be "
            "letters, digits, '-', '_' and '.', not starting with '.'"
        )
    if cfg.suite.kind == "train" and not cfg.architectures:
        out.append("a train suite needs at least one [[architectures]] entry")
    for i, arch in enumerate(cfg.architectures):
        where = f"architectures[{i}]"
        if arch.name == "plain":
            bad = [s for s in arch.scales if s not in (4, 8, 16)]
            if bad or not arch.scales:
                out.append(f"{where}.scales = {arch.scales}: the plain architecture supports 4, 8 and 16")
            out += _repeats(f"{where}.scales", arch.scales, "scale")
        else:
            valid = PROBE_PROTOCOLS if arch.name == "probe" else PROTOCOLS
            bad = [p for p in arch.protocols if p not in valid]
            if bad or not arch.protocols:
                out.append(f"{where}.protocols = {arch.protocols}: choose from {', '.join(valid)}")
            out += _repeats(f"{where}.protocols", arch.protocols, "protocol")
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
    out += _repeats("seeds", cfg.seeds, "seed")
    out += _repeats("operators", cfg.operators, "operator")
    if cfg.suite.kind == "ops":
        for key in ("scales", "sizes", "settings", "gpu_settings", "modes"):
            out += _repeats(f"ops.{key}", getattr(cfg.ops, key), key[:-1].replace("gpu_", "GPU "))
    out += _train_problems(cfg)
    out += _pretrained_problems(cfg)
    if cfg.suite.kind == "train":
        out += _dataset_problems(cfg.dataset)
    out += _operator_problems(cfg)
    out += _executor_problems(cfg)
    return out


def _repeats(where: str, values: list[Any], what: str) -> list[str]:
    """One line if a list-valued axis (seeds, scales, sizes, ...) names a value twice: the suite
    would hold the same cell twice (one id, two runs of it)."""
    counts = Counter(json.dumps(v) for v in values)
    repeated = [json.loads(k) for k, n in counts.items() if n > 1]
    if not repeated:
        return []
    return [f"{where} = {values} repeats {', '.join(map(str, repeated))}: each {what} may appear once"]


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
    included = _selected(cfg.operators)
    for pattern in cfg.exclude_operators:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in included):
            out.append(f"exclude_operators: pattern '{pattern}' matches none of the suite's operators")
    kept = [n for n in included if not any(fnmatch.fnmatchcase(n, p) for p in cfg.exclude_operators)]
    unknown = any(line.startswith("operators:") for line in out)  # named already, not "no cells" too
    if not kept and not cfg.variants and not unknown:
        if not included:
            out.append(
                f"the suite has no cells: operators = {cfg.operators} selects no operator and there are no [[variants]]"
            )
        else:
            out.append(
                f"the suite has no cells: exclude_operators = {cfg.exclude_operators} removes all {len(included)} "
                f"operator(s) that operators = {cfg.operators} selects, and there are no [[variants]]"
            )
    for op in cfg.options:
        try:
            name = get_operator(op).info.name
        except UnknownOperatorError:
            continue  # reported above
        if name in included and name not in kept:
            out.append(
                f"options.{op}: operator '{name}' is removed by exclude_operators = {cfg.exclude_operators}, "
                "so these options apply to no cell"
            )
        elif name not in included:
            out.append(
                f"options.{op}: operator '{name}' is not in the suite (operators: {', '.join(kept) or 'none'}), "
                "so these options apply to no cell; [[variants]] take their own options"
            )
    return out


def _selected(patterns: list[str]) -> list[str]:
    """The registered operators that the suite's ``operators`` list selects (names or globs), in
    order; unknown names are left out (reported as such)."""
    from upbench.errors import UnknownOperatorError
    from upbench.registry import get_operator, list_operators

    names: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            found = list_operators(pattern)
        else:
            try:
                found = [get_operator(pattern).info.name]
            except UnknownOperatorError:
                found = []
        names += [n for n in found if n not in names]
    return names


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


def _operator_build_problems(cell: Cell, memory: int | None = None, device: str = "cpu") -> list[str]:
    """Build the cell's operator (ops) or model (train) on the meta device; a rejection is a problem,
    and so is a train cell whose weights, gradients and optimizer state alone need more than
    ``memory`` bytes (None: unknown, not checked). Ops cells are not checked for memory: a cost
    sweep records the sizes that do not fit as 'oom' rows, by design."""
    import torch

    c = cell.config
    where = f"operator '{c['label']}' ({c['architecture']}, {c['protocol']}, x{c['scale']})"
    try:
        with torch.device("meta"):
            if cell.kind == "ops":
                from upbench.registry import create_operator, operator_info

                b, ch, h, w, g = c["size"]
                if operator_info(c["operator"]).supports_scale(c["scale"]):  # else a 'skipped' row, by design
                    create_operator(c["operator"], ch, c["scale"], g, **c["options"])
                return []
            from upbench.cell import build_cell_model
            from upbench.data import dataset_info

            model = build_cell_model(c, dataset_info(c["dataset"]["name"]).num_classes)
    except Exception as exc:  # the same error would fail the cell when it runs
        return [f"{where}: {_one_line(exc)}"]
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    what = f"{where}: training its model's {n / 1e6:.1f} M parameters (weights, gradients, optimizer state)"
    return limits.memory_problem(what, limits.training_bytes(n, trainable, c["train"]), device, memory)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{text}" if isinstance(exc, UpbenchError) else f"{type(exc).__name__}: {text}"


def cell_problems(suite: Suite, device: str = "cpu", *, check_data: bool = True) -> list[str]:
    """What would fail once cells run, checked now: ``--only`` filters, no cells or the same cell
    twice, datasets that cannot be built (unless ``check_data`` is False: see :func:`data_problems`),
    a batch larger than the training set, Triton on a CPU, operator configurations that the operator
    (or model) rejects, and memory that ``device`` does not have (:mod:`upbench.suite.limits`;
    checked when the suite's executor is ``local``: other executors run cells on other machines).
    One line each."""
    cfg = suite.config
    try:
        cells = suite.all_cells(device)
    except UpbenchError as err:
        return [str(err)]
    if not cells:
        return [f"the suite has no cells on {device}: {_empty_grid(cfg)}"]
    out = filter_problems(cells, suite.only)
    selected = [c for c in cells if not out and c.matches(suite.only)] or cells
    out += _twice(cells)
    if check_data:
        out += data_problems(suite)
    out += limits.triton_problems(_option_keys(suite), device)
    memory = limits.machine_memory(device) if cfg.executor.name == "local" else None
    if cfg.suite.kind == "train":
        out += limits.batch_problems(cfg)
        out += limits.profile_problems(cfg, device, memory)
    seen: set[str] = set()
    for cell in selected:
        key = json.dumps(_build_key(cell), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out += _operator_build_problems(cell, memory, device)
    return list(dict.fromkeys(out))


def _option_keys(suite: Suite) -> list[tuple[str, dict[str, Any]]]:
    """``(where its options are set, options with defaults)`` of every operator and variant."""
    from upbench.registry import get_operator

    variants = {v.name for v in suite.config.variants}
    out = []
    for label, op, opts in suite.operator_entries():
        where = f"variants '{label}' option " if label in variants else f"options.{op}."
        out.append((where, {**get_operator(op).info.options, **opts}))
    return out


def _twice(cells: list[Cell]) -> list[str]:
    """One line if the suite holds a cell more than once (e.g. two [[architectures]] entries with
    a scale in common, or an ops setting that repeats a grid size at its scale): one id, run twice."""
    counts = Counter(c.cell_id for c in cells)
    repeated = [c for c in cells if counts.pop(c.cell_id, 1) > 1]
    if not repeated:
        return []
    first = repeated[0]
    others = f" (and {len(repeated) - 1} other cell(s))" if len(repeated) > 1 else ""
    return [
        f"cell {first.cell_id} ({' '.join(first.label_fields())}) appears more than once in the suite{others}: "
        "each cell may appear once; check [[architectures]] entries and ops settings that overlap"
    ]


def _empty_grid(cfg: SuiteConfig) -> str:
    """Why a suite whose operators are fine has no cells (its ops grid is empty)."""
    if cfg.suite.kind == "ops":
        return (
            f"ops.sizes = {cfg.ops.sizes} x ops.scales = {cfg.ops.scales} and ops.settings = {cfg.ops.settings} "
            "give no operator setting (ops.gpu_settings are added only on CUDA)"
        )
    return "no architecture, scale, protocol or seed"


def data_problems(suite: Suite) -> list[str]:
    """Whether a train suite's dataset is on disk and both splits build: what ``plan`` reports
    (as problems that would stop ``run``) without stopping, so that cells and costs show first."""
    return _build_problems(suite.config.dataset) if suite.config.suite.kind == "train" else []
