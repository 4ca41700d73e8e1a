"""Suites: declarative TOML files validated into typed configs and expanded into cells.

A suite says *what* to run: operators x architectures (with their scales or protocols) x seeds
on one dataset, with training and evaluation settings (``kind = "train"``), or operators x
scales x input sizes for cost profiling (``kind = "ops"``). Every key is checked when the file
is loaded: an unknown key or a value of the wrong type raises :class:`ConfigError` naming it and
the valid choices. See ``suites/quick.toml`` for a commented example.

A cell is one unit of work with a stable id: the first 12 hex digits of the SHA-1 of its
resolved configuration (canonical JSON), so re-running a suite finds the cells already done.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib

from upbench import validation
from upbench.errors import ConfigError, UpbenchError
from upbench.validation import Bounds, NonNegativeInt, PositiveInt

SUITE_PACKAGE = "upbench_suites"
ARCHITECTURES = ("hierarchical", "plain", "probe")
PROTOCOLS = ("jump", "cascade")
#: Largest single-step ratio of each hierarchical protocol (recorded as the cell's ``scale``).
PROTOCOL_SCALE = {"jump": 8, "cascade": 2}
#: Version of the measurement protocol, part of every cell id: bump it when a change of code
#: (not of settings) makes earlier results incomparable, so that old cells are reported as stale.
PROTOCOL_VERSION = 2

#: Probe architecture: upsampler trained with the task loss or frozen (``upbench.architectures.probe``).
PROBE_PROTOCOLS = ("trained", "frozen")


def probe_scale(preset: str) -> int:
    """The probe's ratio, the ViT patch: 16 for the built-in presets, ``patchNN`` of a ``timm:`` name."""
    found = re.search(r"patch(\d+)", preset) if preset.startswith("timm:") else None
    return int(found.group(1)) if found else 16


# --------------------------------------------------------------------------- typed sections
@dataclass
class SuiteMeta:
    """``[suite]``: name, description and kind of work."""

    name: str = ""
    description: str = ""
    kind: Literal["train", "ops"] = "train"


@dataclass
class ArchitectureSpec:
    """One ``[[architectures]]`` entry: a model family with its preset and ratios or protocols."""

    name: Literal["hierarchical", "plain", "probe"] = "plain"
    preset: str = "tiny"
    scales: list[PositiveInt] = field(default_factory=lambda: [4])
    protocols: list[str] = field(default_factory=lambda: ["jump"])


@dataclass
class VariantSpec:
    """One ``[[variants]]`` entry: an operator with non-default options under its own label."""

    name: str = ""
    operator: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetSpec:
    """``[dataset]``: which dataset, where, and keyword options for ``build_dataset``."""

    name: str = "contextual"
    root: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    val: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelSpec:
    """``[model]``: encoder weights (``pretrained``: a local checkpoint file, ``"shipped:<dataset>"``
    for the encoders upbench ships pretrained on a generated dataset, "" for random init).

    See :mod:`upbench.architectures.pretrained` for the layouts it reads (MiT: mmseg or the
    original SegFormer release; ViT/16: mmseg/Segmenter or timm; upbench's own; ``.pth`` or
    ``.safetensors``) and :mod:`upbench.architectures.shipped` for the shipped ones.
    """

    pretrained: str = ""


@dataclass
class EvalSpec:
    """``[eval]``: inference mode and sliding-window geometry."""

    mode: Literal["whole", "slide"] = "whole"
    crop_size: PositiveInt = 512
    stride: PositiveInt = 341
    batch_size: PositiveInt = 1


@dataclass
class ProfileSpec:
    """``[profile]``: cost measurements of train cells (model and operator, batch 1)."""

    enabled: bool = True
    latency: bool = True
    warmup: NonNegativeInt = 3  # latency and peak memory: >= 3 warm-up and >= 10 timed calls (median [IQR])
    iters: PositiveInt = 10
    image_size: NonNegativeInt = 0  # 0: the evaluation crop/size of the dataset


@dataclass
class OpsSpec:
    """``[ops]``: the operator-profiling grid (``kind = "ops"``)."""

    scales: list[Annotated[int, Bounds(ge=2)]] = field(default_factory=lambda: [2, 4, 8, 16])
    # each size: [batch, in_channels, lr_height, lr_width, guide_channels]
    sizes: list[list[PositiveInt]] = field(default_factory=lambda: [[1, 64, 16, 16, 64]])
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    warmup: NonNegativeInt = 2
    iters: PositiveInt = 5
    modes: list[Literal["forward", "forward_backward"]] = field(default_factory=lambda: ["forward", "forward_backward"])
    # explicit settings at their own scale: [batch, in_channels, lr_height, lr_width, guide_channels, scale]
    settings: list[list[PositiveInt]] = field(default_factory=list)
    gpu_settings: list[list[PositiveInt]] = field(default_factory=list)  # added when running on a GPU


@dataclass
class ExecutorSpec:
    """``[executor]``: where the cells run (``upbench run`` flags override it); part of no cell id."""

    name: Literal["local", "ray", "slurm"] = "local"
    workers: NonNegativeInt = 0  # ray: cells at once (0: as many as the cluster schedules)
    ray_address: str = ""  # ray: join this cluster ("auto", "ray://host:10001"); empty: start a local one
    cpus_per_cell: PositiveInt = 1  # ray and slurm: CPUs (torch threads) per process of a cell
    # GPUs per cell on CUDA: one per process, train.world_size processes (a train key: it is in the cell id)
    gpus_per_node: NonNegativeInt = 0  # slurm: GPUs per node; a cell with more processes spans nodes (0: one node)
    partition: str = ""  # slurm
    account: str = ""  # slurm
    mem_gb: NonNegativeInt = 0  # slurm: memory per job (0: the partition default)
    time_min: PositiveInt = 60  # slurm: time limit per job
    sbatch: dict[str, Any] = field(default_factory=dict)  # slurm: extra #SBATCH options, e.g. {qos = "high"}


@dataclass
class SuiteConfig:
    """A whole suite after validation (one attribute per TOML table)."""

    suite: SuiteMeta = field(default_factory=SuiteMeta)
    operators: list[str] = field(default_factory=lambda: ["*"])
    exclude_operators: list[str] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: list[VariantSpec] = field(default_factory=list)
    architectures: list[ArchitectureSpec] = field(default_factory=list)
    seeds: list[NonNegativeInt] = field(default_factory=lambda: [0])
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: dict[str, Any] = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    profile: ProfileSpec = field(default_factory=ProfileSpec)
    ops: OpsSpec = field(default_factory=OpsSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)


# --------------------------------------------------------------------------- validation
def _semantic_problems(cfg: SuiteConfig) -> list[str]:
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
    return out


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


# --------------------------------------------------------------------------- overrides
def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax (numbers, true/false, [lists], "strings") or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys; ``architectures.0.scales=[4]`` for list items)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: '{part}' is not an index of {'.'.join(parts[:i])}")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise ConfigError(f"--set {key}: '{'.'.join(parts[: i + 1])}' is not a table")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {key}: '{last}' is not an index")
            node[int(last)] = _parse_value(text.strip())
        else:
            node[last] = _parse_value(text.strip())
    return data


# --------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    """One unit of work: its identity fields and the full resolved configuration."""

    cell_id: str
    kind: str
    config: dict[str, Any]

    #: Identity fields shown by ``plan`` and copied into every result row.
    LABELS: tuple[str, ...] = ("operator", "architecture", "protocol", "preset", "scale", "seed", "size")

    def label_names(self) -> list[str]:
        return list(self.LABELS)

    def label_fields(self) -> list[str]:
        c = self.config
        size = "x".join(str(v) for v in c["size"]) if c.get("size") else str(c.get("image_size", ""))
        return [c["label"], c["architecture"], c["protocol"], c["preset"], str(c["scale"]), str(c["seed"]), size]

    def filter_values(self) -> dict[str, str]:
        """The fields ``--only FIELD=GLOB`` can filter on, as text."""
        values = dict(zip(self.LABELS, self.label_fields()))
        values.update(
            label=self.config["label"], dataset=self.config.get("dataset", {}).get("name", ""), kind=self.kind
        )
        return values

    def matches(self, filters: Sequence[str]) -> bool:
        """True if every filter matches: ``FIELD=GLOB[,GLOB...]`` (a comma list means any of them) or
        a prefix of the cell id."""
        for f in filters:
            if "=" not in f:
                if not self.cell_id.startswith(f.strip()):
                    return False
                continue
            key, patterns = (part.strip() for part in f.split("=", 1))
            values = self.filter_values()
            if key not in values:
                raise ConfigError(f"--only {f}: unknown field '{key}'; valid: {', '.join(sorted(values))}")
            if not any(fnmatch.fnmatchcase(values[key], p.strip()) for p in patterns.split(",")):
                return False
        return True


def filter_problems(cells: Sequence[Cell], filters: Sequence[str]) -> list[str]:
    """One line per ``--only`` filter on an unknown field or matching no cell, or if none is left."""
    out = []
    for f in filters:
        try:
            if cells and not any(c.matches([f]) for c in cells):
                out.append(f"--only {f} matches none of the suite's {len(cells)} cells")
        except ConfigError as err:
            out.append(str(err))
    if not out and filters and cells and not any(c.matches(filters) for c in cells):
        out.append(f"--only {' --only '.join(filters)}: no cell matches all these filters together")
    return out


def _resolved_dataset(ds: DatasetSpec) -> dict[str, Any]:
    """The dataset section with every builder option filled in with its default."""
    from upbench.data import dataset_info

    options = dataset_info(ds.name).options
    return {"name": ds.name, "root": ds.root, "train": {**options, **ds.train}, "val": {**options, **ds.val}}


def _train_key(train: Any) -> dict[str, Any]:
    """The train section of a cell config; ``world_size`` only when above 1, so that the ids of
    single-process cells stay what they were before multi-process cells existed."""
    out = train.to_dict()
    if out["world_size"] == 1:
        del out["world_size"]
    return out


def cell_id_of(config: dict[str, Any]) -> str:
    """Stable id: SHA-1 of the canonical JSON of the resolved cell config (12 hex digits)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass
class Suite:
    """A loaded suite: its validated config, the raw resolved data and cell filters."""

    config: SuiteConfig
    data: dict[str, Any]
    source: str
    only: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config.suite.name

    def operator_entries(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(label, operator, options)`` for every operator and variant of the suite."""
        from upbench.registry import get_operator, list_operators

        names: list[str] = []
        for pattern in self.config.operators:
            is_glob = any(ch in pattern for ch in "*?[")
            matched = list_operators(pattern) if is_glob else [get_operator(pattern).info.name]
            if not matched:
                raise ConfigError(f"operators: pattern '{pattern}' matches no registered operator")
            names += [m for m in matched if m not in names]
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in self.config.exclude_operators)]
        entries = [(n, n, dict(self.config.options.get(n, {}))) for n in names]
        entries += [(v.name, get_operator(v.operator).info.name, dict(v.options)) for v in self.config.variants]
        return entries

    def cells(self, device: str = "cpu") -> list[Cell]:
        """The cells of the suite after ``--only`` filters, in a stable order."""
        return [c for c in self.all_cells(device) if c.matches(self.only)]

    def all_cells(self, device: str = "cpu") -> list[Cell]:
        """All cells of the suite (no ``--only`` filter), in a stable order."""
        cfg = self.config
        cells: list[Cell] = []
        for label, op, options in self.operator_entries():
            if cfg.suite.kind == "ops":
                grid = [(list(size), scale) for size in cfg.ops.sizes for scale in cfg.ops.scales]
                extra = cfg.ops.settings + (cfg.ops.gpu_settings if device.startswith("cuda") else [])
                for size, scale in grid + [(list(st[:5]), st[5]) for st in extra]:
                    cell = self._cell(
                        "ops", label, op, options, "none", "none", "none", scale, 0, size=size, device=device
                    )
                    cells.append(cell)
                continue
            for arch in cfg.architectures:
                if arch.name == "plain":
                    variants = [("direct", s) for s in arch.scales]
                elif arch.name == "probe":
                    variants = [(p, probe_scale(arch.preset)) for p in arch.protocols]
                else:
                    variants = [(p, PROTOCOL_SCALE[p]) for p in arch.protocols]
                for protocol, scale in variants:
                    for seed in cfg.seeds:
                        cells.append(
                            self._cell(
                                "train",
                                label,
                                op,
                                options,
                                arch.name,
                                protocol,
                                arch.preset,
                                scale,
                                seed,
                                device=device,
                            )
                        )
        return cells

    def problems(self, device: str = "cpu", *, check_data: bool = True) -> list[str]:
        """What would fail once cells run, checked now: ``--only`` filters, datasets that cannot be
        built (unless ``check_data`` is False: see :meth:`data_problems`), operator configurations
        that the operator (or model) rejects. One line each."""
        try:
            cells = self.all_cells(device)
        except UpbenchError as err:
            return [str(err)]
        out = filter_problems(cells, self.only)
        selected = [c for c in cells if not out and c.matches(self.only)] or cells
        if check_data:
            out += self.data_problems()
        seen: set[str] = set()
        for cell in selected:
            key = json.dumps(_build_key(cell), sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out += _operator_build_problems(cell)
        return list(dict.fromkeys(out))

    def data_problems(self) -> list[str]:
        """Whether a train suite's dataset is on disk and both splits build: what ``plan`` reports
        (as problems that would stop ``run``) without stopping, so that cells and costs show first."""
        return _build_problems(self.config.dataset) if self.config.suite.kind == "train" else []

    def _cell(
        self,
        kind: str,
        label: str,
        op: str,
        options: dict[str, Any],
        architecture: str,
        protocol: str,
        preset: str,
        scale: int,
        seed: int,
        *,
        device: str,
        size: list[int] | None = None,
    ) -> Cell:
        from upbench.registry import get_operator

        cfg = self.config
        defaults = get_operator(op).info.options
        config: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "kind": kind,
            "label": label,
            "operator": op,
            "options": {k: v for k, v in options.items() if defaults.get(k, object()) != v},
            "resolved_options": {**defaults, **options},
            "architecture": architecture,
            "protocol": protocol,
            "preset": preset,
            "scale": scale,
            "seed": seed,
            "device": device,
        }
        if kind == "ops":
            skip = ("sizes", "settings", "gpu_settings", "scales")
            config.update(size=size, ops={k: v for k, v in dataclasses.asdict(cfg.ops).items() if k not in skip})
        else:
            from upbench.architectures.shipped import is_shipped, shipped_entry
            from upbench.metrics import MetricOptions
            from upbench.training import TrainConfig

            config.update(
                dataset=_resolved_dataset(cfg.dataset),
                train=_train_key(TrainConfig(**{**cfg.train, "seed": seed})),
                eval=dataclasses.asdict(cfg.eval),
                metrics=dataclasses.asdict(MetricOptions()),
                profile=dataclasses.asdict(cfg.profile),
            )
            if cfg.model.pretrained:  # only when set, so the ids of random-init cells stay as they were
                config["model"] = dataclasses.asdict(cfg.model)
                if is_shipped(cfg.model.pretrained):  # other weights shipped under the same name: new cells
                    entry = shipped_entry(cfg.model.pretrained, config["architecture"], config["preset"])
                    config["model"]["sha256"] = entry["sha256"]
        return Cell(cell_id_of(config), kind, config)


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
                from upbench.data import dataset_info
                from upbench.runner import build_cell_model

                build_cell_model(c, dataset_info(c["dataset"]["name"]).num_classes)
    except Exception as exc:  # the same error would fail the cell when it runs
        return [f"{where}: {_one_line(exc)}"]
    return []


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{text}" if isinstance(exc, UpbenchError) else f"{type(exc).__name__}: {text}"


# --------------------------------------------------------------------------- loading
def builtin_suites() -> list[str]:
    """Names of the suites shipped in ``suites/``."""
    return sorted(p.name[:-5] for p in resources.files(SUITE_PACKAGE).iterdir() if p.name.endswith(".toml"))


def describe_builtin_suites() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped suite."""
    out = []
    for name in builtin_suites():
        data = tomllib.loads(resources.files(SUITE_PACKAGE).joinpath(f"{name}.toml").read_text())
        out.append((name, str(data.get("suite", {}).get("description", ""))))
    return out


def _read_suite_text(name_or_path: str | Path) -> tuple[str, str]:
    path = Path(name_or_path)
    if str(name_or_path).endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"suite file '{path}' does not exist")
        return path.read_text(), str(path)
    name = str(name_or_path)
    if name not in builtin_suites():
        import difflib

        close = difflib.get_close_matches(name, builtin_suites(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown suite '{name}'.{hint} Shipped suites: {', '.join(builtin_suites())}; "
            "or give a path to a .toml file"
        )
    return resources.files(SUITE_PACKAGE).joinpath(f"{name}.toml").read_text(), f"{SUITE_PACKAGE}/{name}.toml"


def parse_suite(data: dict[str, Any], source: str = "<dict>") -> SuiteConfig:
    """Validate a suite given as nested dicts (as read from TOML); all problems in one ConfigError."""
    problems: list[str] = []
    cfg = validation.build(SuiteConfig, data, "", problems)
    problems += _semantic_problems(cfg)
    validation.raise_if(list(dict.fromkeys(problems)), ConfigError)
    return cfg


def load_suite(
    name_or_path: str | Path,
    overrides: Iterable[str] = (),
    only: Iterable[str] = (),
    *,
    device: str | None = None,
    check_data: bool = True,
) -> Suite:
    """Load a shipped suite by name or a user's TOML file, apply ``--set`` overrides and validate.

    With ``device``, also run the checks of :meth:`Suite.problems` (datasets built, every distinct
    operator configuration built on the meta device, ``--only`` filters), so that ``plan`` and
    ``run`` list every problem before any cell runs (``check_data=False`` leaves the dataset on
    disk out: :meth:`Suite.data_problems`). Problems raise one :class:`ConfigError` with one line each.
    """
    text, source = _read_suite_text(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"suite file {source} is not valid TOML: {err}") from None
    data = apply_overrides(data, overrides)
    problems: list[str] = []
    cfg = validation.build(SuiteConfig, data, "", problems)
    problems += _semantic_problems(cfg)
    suite = Suite(cfg, data, source, list(only))
    if device is not None and not problems:  # the cell-level checks need a valid configuration
        problems += suite.problems(device, check_data=check_data)
    validation.raise_if(list(dict.fromkeys(problems)), ConfigError)
    return suite


def dump_toml(data: dict[str, Any]) -> str:
    """Serialise nested dicts of scalars/lists (a suite) as TOML (tables and arrays of tables)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {scalar(x)}" for k, x in v.items()) + "}"
        raise ConfigError(f"cannot write {v!r} to TOML")

    lines: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        simple = {
            k: v
            for k, v in d.items()
            if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))
        }
        if prefix and (simple or not d):
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{json.dumps(k) if not k.isidentifier() else k} = {scalar(v)}" for k, v in simple.items())
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                table(name, v)
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for item in v:
                    lines.append(f"\n[[{name}]]")
                    lines.extend(f"{k2} = {scalar(v2)}" for k2, v2 in item.items())

    table("", data)
    return "\n".join(lines).lstrip() + "\n"
