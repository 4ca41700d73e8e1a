"""Training settings (:class:`TrainConfig`), checked when built."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"train.optimizer '{self.optimizer}' is unknown; choose from {', '.join(OPTIMIZERS)}"
            )
        positive = {"iters": self.iters, "batch_size": self.batch_size, "log_every": self.log_every}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_iters", "checkpoint_every", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"train.{name} must be an integer >= 0, got {value!r}")
        for name in ("lr", "weight_decay", "momentum", "min_lr", "grad_clip", "poly_power"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1], got {self.warmup_ratio!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (stored in checkpoints)."""
        return asdict(self)
