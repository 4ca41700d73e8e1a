"""Training settings (:class:`TrainConfig`), checked when built."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from upbench.errors import ConfigError
from upbench.validation import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    check_fields,
    raise_if,
)

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
    lr: PositiveFloat = 6e-5
    weight_decay: NonNegativeFloat = 0.01
    momentum: NonNegativeFloat = 0.9
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    iters: PositiveInt = 1000
    batch_size: PositiveInt = 8
    warmup_iters: NonNegativeInt = 0
    warmup_ratio: Fraction = 1e-6
    poly_power: NonNegativeFloat = 1.0
    min_lr: NonNegativeFloat = 0.0
    grad_clip: NonNegativeFloat = 0.0
    seed: NonNegativeInt = 0
    deterministic: bool = False
    amp: bool = False
    checkpoint_every: NonNegativeInt = 0
    num_workers: NonNegativeInt = 0
    log_every: PositiveInt = 1
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        raise_if(check_fields(self, "train"), ConfigError)
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def compute_dtype(self, device: str | torch.device) -> str:
        """The dtype the forward pass runs in on ``device``: float16 under AMP on CUDA, else float32."""
        return "float16" if self.amp and torch.device(device).type == "cuda" else "float32"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (stored in checkpoints)."""
        return asdict(self)
