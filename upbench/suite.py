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
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import tomllib

from upbench.errors import ConfigError

SUITE_PACKAGE = "upbench_suites"
ARCHITECTURES = ("hierarchical", "plain", "probe")
PROTOCOLS = ("jump", "cascade")
#: Largest single-step ratio of each hierarchical protocol (recorded as the cell's ``scale``).
PROTOCOL_SCALE = {"jump": 8, "cascade": 2}
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
    scales: list[int] = field(default_factory=lambda: [4])
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

    name: str = "synthetic"
    root: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    val: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSpec:
    """``[eval]``: inference mode and sliding-window geometry."""

    mode: Literal["whole", "slide"] = "whole"
    crop_size: int = 512
    stride: int = 341
    batch_size: int = 1


@dataclass
class ProfileSpec:
    """``[profile]``: cost measurements of train cells (model and operator, batch 1)."""

    enabled: bool = True
    latency: bool = True
    warmup: int = 2
    iters: int = 5
    image_size: int = 0  # 0: the evaluation crop/size of the dataset


@dataclass
class OpsSpec:
    """``[ops]``: the operator-profiling grid (``kind = "ops"``)."""

    scales: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    # each size: [batch, in_channels, lr_height, lr_width, guide_channels]
    sizes: list[list[int]] = field(default_factory=lambda: [[1, 64, 16, 16, 64]])
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    warmup: int = 2
    iters: int = 5
    modes: list[str] = field(default_factory=lambda: ["forward", "forward_backward"])
    # explicit settings at their own scale: [batch, in_channels, lr_height, lr_width, guide_channels, scale]
    settings: list[list[int]] = field(default_factory=list)
    gpu_settings: list[list[int]] = field(default_factory=list)  # added when running on a GPU


@dataclass
class SuiteConfig:
    """A whole suite after validation (one attribute per TOML table)."""

    suite: SuiteMeta = field(default_factory=SuiteMeta)
    operators: list[str] = field(default_factory=lambda: ["*"])
    exclude_operators: list[str] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: list[VariantSpec] = field(default_factory=list)
    architectures: list[ArchitectureSpec] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    train: dict[str, Any] = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    profile: ProfileSpec = field(default_factory=ProfileSpec)
    ops: OpsSpec = field(default_factory=OpsSpec)


# --------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (and build nested dataclasses)."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return _build(tp, value, where)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where} = {value!r} is not valid; choose one of {', '.join(map(repr, get_args(tp)))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
        (item,) = get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}' in {where or 'the suite'}; valid keys: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _simple_hint(tp: Any) -> Any:
    """``X | None`` -> ``X`` (a suite cannot write None); other annotations unchanged."""
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) in (Union, UnionType) and len(args) == 1:
        return args[0]
    if get_origin(tp) in (Union, UnionType):
        return Any
    return tp


def _check_semantics(cfg: SuiteConfig) -> None:
    """Cross-field checks that types alone cannot express."""
    if not cfg.suite.name:
        raise ConfigError('suite.name is missing: every suite needs [suite] name = "..."')
    if cfg.suite.kind == "train" and not cfg.architectures:
        raise ConfigError("a train suite needs at least one [[architectures]] entry")
    for i, arch in enumerate(cfg.architectures):
        where = f"architectures[{i}]"
        if arch.name == "plain":
            bad = [s for s in arch.scales if s not in (4, 8, 16)]
            if bad or not arch.scales:
                raise ConfigError(f"{where}.scales = {arch.scales}: the plain architecture supports 4, 8 and 16")
        else:
            valid = PROBE_PROTOCOLS if arch.name == "probe" else PROTOCOLS
            bad = [p for p in arch.protocols if p not in valid]
            if bad or not arch.protocols:
                raise ConfigError(f"{where}.protocols = {arch.protocols}: choose from {', '.join(valid)}")
    for s in cfg.ops.scales:
        if s < 2:
            raise ConfigError(f"ops.scales: {s} is not an integer scale >= 2")
    for size in cfg.ops.sizes:
        if len(size) != 5 or any(v < 1 for v in size):
            raise ConfigError(
                f"ops size {size} must be [batch, in_channels, lr_height, lr_width, guide_channels], all >= 1"
            )
    for setting in [*cfg.ops.settings, *cfg.ops.gpu_settings]:
        if len(setting) != 6 or any(v < 1 for v in setting) or setting[5] < 2:
            raise ConfigError(
                f"ops setting {setting} must be [batch, in_channels, lr_height, lr_width, guide_channels, scale], "
                "all >= 1 and scale >= 2"
            )
    for m in cfg.ops.modes:
        if m not in ("forward", "forward_backward"):
            raise ConfigError(f"ops.modes: {m!r} is not valid; choose from 'forward', 'forward_backward'")
    if not cfg.seeds:
        raise ConfigError("seeds must list at least one seed")
    if cfg.train:
        from upbench.training import TrainConfig

        valid = [f.name for f in dataclasses.fields(TrainConfig)]
        unknown = sorted(set(cfg.train) - set(valid))
        if unknown:
            raise ConfigError(f"unknown key '{unknown[0]}' in train; valid keys: {', '.join(valid)}")
        hints = get_type_hints(TrainConfig)
        cfg.train = {k: _coerce(v, _simple_hint(hints[k]), f"train.{k}") for k, v in cfg.train.items()}
    from upbench.errors import UnknownOperatorError
    from upbench.registry import get_operator

    for where, names in (
        ("operators", cfg.operators),
        ("options", list(cfg.options)),
        ("variants", [v.operator for v in cfg.variants]),
    ):
        for name in names:
            if not any(ch in name for ch in "*?["):
                try:
                    get_operator(name)
                except UnknownOperatorError as err:
                    raise ConfigError(f"{where}: {err}") from None
    for op_name, opts in cfg.options.items():
        _check_operator_options(get_operator(op_name).info.name, opts, f"options.{op_name}")
    for v in cfg.variants:
        if not v.name or not v.operator:
            raise ConfigError("every [[variants]] entry needs name and operator")
        _check_operator_options(get_operator(v.operator).info.name, v.options, f"variants '{v.name}'")


def _check_operator_options(name: str, options: dict[str, Any], where: str) -> None:
    from upbench.errors import InvalidOptionError
    from upbench.registry import check_options, get_operator

    try:
        check_options(get_operator(name), options)
    except InvalidOptionError as err:
        raise ConfigError(f"{where}: {err}") from None


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

    def matches(self, filters: Sequence[str]) -> bool:
        """True if every ``FIELD=GLOB`` filter matches (or a filter is a prefix of the id)."""
        for f in filters:
            if "=" not in f:
                if not self.cell_id.startswith(f):
                    return False
                continue
            key, pattern = f.split("=", 1)
            key = key.strip()
            values = dict(zip(self.LABELS, self.label_fields()))
            values.update(
                label=self.config["label"], dataset=self.config.get("dataset", {}).get("name", ""), kind=self.kind
            )
            if key not in values:
                raise ConfigError(f"--only {f}: unknown field '{key}'; valid: {', '.join(sorted(values))}")
            if not fnmatch.fnmatchcase(values[key], pattern.strip()):
                return False
        return True


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
        """All cells of the suite (after ``--only`` filters), in a stable order."""
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
        return [c for c in cells if c.matches(self.only)]

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
        cfg = self.config
        config: dict[str, Any] = {
            "kind": kind,
            "label": label,
            "operator": op,
            "options": options,
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
            config.update(
                dataset=dataclasses.asdict(cfg.dataset),
                train=dict(cfg.train),
                eval=dataclasses.asdict(cfg.eval),
                profile=dataclasses.asdict(cfg.profile),
            )
        return Cell(cell_id_of(config), kind, config)


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
    """Validate a suite given as nested dicts (as read from TOML)."""
    cfg = _build(SuiteConfig, data, "")
    _check_semantics(cfg)
    return cfg


def load_suite(name_or_path: str | Path, overrides: Iterable[str] = (), only: Iterable[str] = ()) -> Suite:
    """Load a shipped suite by name or a user's TOML file, apply ``--set`` overrides and validate."""
    text, source = _read_suite_text(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"suite file {source} is not valid TOML: {err}") from None
    data = apply_overrides(data, overrides)
    cfg = parse_suite(data, source)
    return Suite(cfg, data, source, list(only))


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
