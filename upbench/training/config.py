"""Training settings (:class:`TrainConfig`), checked when built."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from upbench.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
#: Fields that do not change the trajectory of a run (may differ between a run and its resume).
RESUME_FREE_FIELDS = ("checkpoint_every", "num_workers", "log_every", "find_unused_parameters")


@dataclass
class TrainConfig:
    """Iteration-based training settings (mmseg conventions).

    Attributes:
        optimizer: ``"adamw"`` or ``"sgd"``.
        lr: base learning rate (operator groups get ``lr * lr_mult``).
        weight_decay: weight decay of weights (biases, norms, position embeddings get none).
        momentum: SGD momentum.
        betas: AdamW betas.
        iters: number of iterations (optimizer steps).
        batch_size: images per step and per process (mmseg's ``samples_per_gpu``).
        warmup_iters: linear warm-up length (0: none).
        warmup_ratio: learning-rate factor at iteration 0 of the warm-up.
        poly_power: power of the poly decay ``(1 - t / iters) ** power``.
        min_lr: base learning rate at the end of the poly decay (operator groups: ``min_lr * lr_mult``).
        grad_clip: clip the gradient norm to this value (0: no clipping).
        seed: seed of initial RNG states, data order and augmentation.
        deterministic: ask torch for deterministic kernels (warns where none exists).
        amp: mixed precision (float16 autocast + gradient scaling); only on CUDA, ignored on CPU.
        checkpoint_every: write a checkpoint every N iterations (0: only at the end).
        num_workers: DataLoader worker processes (0: exact resume; see :func:`~upbench.training.train`).
        log_every: record the loss in the history every N iterations.
        find_unused_parameters: passed to DistributedDataParallel.
        accumulate: micro-batches per optimizer step (gradient accumulation): each step still sees
            ``batch_size`` images per process, in ``accumulate`` forward/backward passes of
            ``batch_size / accumulate`` images whose mean losses are averaged, as DDP averages
            the gradients of that many processes (mmseg's 8 GPUs x 2 = batch 16 on fewer GPUs).
        poly_begin: iteration at which the poly decay starts (mmengine's ``PolyLR(begin=...)``;
            SegFormer: 1500, after the warm-up); 0: from the start, as mmcv's poly with warm-up.
        custom_keys: mmseg ``paramwise_cfg`` custom keys, ``{key: {lr_mult, decay_mult}}``
            (see :mod:`upbench.architectures.paramwise`).
        custom_keys_names: whose parameter names ``custom_keys`` match: ``"mmseg"`` (mmseg 1.x,
            ReSFU's code) or ``"segformer"`` (the original SegFormer code of FADE/SAPA/DySample).
        auto_no_decay: no weight decay on biases, norms, position embeddings and the class token
            (upbench default); false reproduces mmseg configs, which decay only by ``custom_keys``.
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 6e-5
    weight_decay: float = 0.01
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    iters: int = 1000
    batch_size: int = 8
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    min_lr: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0
    deterministic: bool = False
    amp: bool = False
    checkpoint_every: int = 0
    num_workers: int = 0
    log_every: int = 1
    find_unused_parameters: bool = False
    accumulate: int = 1
    poly_begin: int = 0
    custom_keys: dict[str, dict[str, float]] = field(default_factory=dict)
    custom_keys_names: Literal["mmseg", "segformer"] = "mmseg"
    auto_no_decay: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"train.optimizer '{self.optimizer}' is unknown; choose from {', '.join(OPTIMIZERS)}"
            )
        positive = {
            "iters": self.iters,
            "batch_size": self.batch_size,
            "log_every": self.log_every,
            "accumulate": self.accumulate,
        }
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_iters", "checkpoint_every", "num_workers", "poly_begin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"train.{name} must be an integer >= 0, got {value!r}")
        for name in ("lr", "weight_decay", "momentum", "min_lr", "grad_clip", "poly_power"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1], got {self.warmup_ratio!r}")
        if self.batch_size % self.accumulate:
            raise ConfigError(
                f"train.batch_size ({self.batch_size}) must be a multiple of train.accumulate ({self.accumulate})"
            )
        if self.poly_begin >= self.iters:
            raise ConfigError(f"train.poly_begin ({self.poly_begin}) must be below train.iters ({self.iters})")
        _check_custom_keys(self.custom_keys)
        if self.custom_keys_names not in ("mmseg", "segformer"):
            raise ConfigError(
                f"train.custom_keys_names '{self.custom_keys_names}' is unknown; choose from mmseg, segformer"
            )
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (stored in checkpoints)."""
        return asdict(self)


def _check_custom_keys(custom_keys: object) -> None:
    if not isinstance(custom_keys, dict):
        raise ConfigError(f"train.custom_keys must be a table of tables, got {custom_keys!r}")
    for key, mults in custom_keys.items():
        if not isinstance(mults, dict):
            raise ConfigError(f"train.custom_keys.{key} must be a table like {{lr_mult = 10.0}}, got {mults!r}")
        for name, value in mults.items():
            if name not in ("lr_mult", "decay_mult"):
                raise ConfigError(f"train.custom_keys.{key}: unknown key '{name}'; valid keys: lr_mult, decay_mult")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"train.custom_keys.{key}.{name} must be a number >= 0, got {value!r}")
