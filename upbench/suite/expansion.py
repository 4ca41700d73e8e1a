"""A suite expanded into cells: each one configuration with every default resolved, and its id.

A cell is one unit of work with a stable id: the first 12 hex digits of the SHA-1 of its
resolved configuration (canonical JSON), so re-running a suite finds the cells already done.
``--only`` filters select cells by their identity fields or an id prefix.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from upbench.errors import ConfigError
from upbench.suite.schema import PROTOCOL_SCALE, DatasetSpec, SuiteConfig, probe_scale

#: Version of the measurement protocol, part of every cell id: bump it when a change of code
#: (not of settings) makes earlier results incomparable, so that old cells are reported as stale.
PROTOCOL_VERSION = 2


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
