"""The typed schema of a suite: one dataclass per TOML table, validated by :mod:`upbench.validation`.

A suite says *what* to run: operators x architectures (with their scales or protocols) x seeds
on one dataset, with training and evaluation settings (``kind = "train"``), or operators x
scales x input sizes for cost profiling (``kind = "ops"``). Every field's annotation is its check
(types, ranges, choices); cross-field checks are in :mod:`upbench.suite.checks`. See
``suites/quick.toml`` for a commented example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from upbench.validation import Bounds, NonNegativeInt, PositiveInt, Seed

ARCHITECTURES = ("hierarchical", "plain", "probe")
PROTOCOLS = ("jump", "cascade")
#: Largest single-step ratio of each hierarchical protocol (recorded as the cell's ``scale``).
PROTOCOL_SCALE = {"jump": 8, "cascade": 2}
#: Version of the measurement protocol, part of every cell id: bump it when a change of code
#: (not of settings) makes earlier results incomparable, so that old cells are reported as stale.

#: Probe architecture: upsampler trained with the task loss or frozen (``upbench.architectures.probe``).
PROBE_PROTOCOLS = ("trained", "frozen")


def probe_scale(preset: str) -> int:
    """The probe's ratio, the ViT patch: 16 for the built-in presets, ``patchNN`` of a ``timm:`` name."""
    found = re.search(r"patch(\d+)", preset) if preset.startswith("timm:") else None
    return int(found.group(1)) if found else 16


# --------------------------------------------------------------------------- typed sections
@dataclass
class SuiteMeta:
    """``[suite]``: name, description and kind of work. ``name`` is the run folder (``runs/<name>``),
    so it is one safe path component: letters, digits, ``-``, ``_`` and ``.``, no leading dot."""

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

    name: str = "local"  # a registered executor (upbench.executors): local, ray, slurm, ...
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
    seeds: list[Seed] = field(default_factory=lambda: [0])
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: dict[str, Any] = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    profile: ProfileSpec = field(default_factory=ProfileSpec)
    ops: OpsSpec = field(default_factory=OpsSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
