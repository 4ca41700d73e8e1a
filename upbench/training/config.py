"""Training settings (:class:`TrainConfig`), checked when built."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import torch

from upbench.errors import ConfigError
from upbench.validation import (
    Bounds,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    Seed,
    check_fields,
    raise_if,
)

#: Largest accepted learning rate. Recipes for AdamW and SGD (the two optimizers) stay below 1:
#: AdamW's are around 1e-4, and SGD's linear scaling rule (0.1 x batch / 256) gives 3.2 even at
#: batch 8192. A larger value is a typo (1e3 for 1e-3, 1e300) whose cell would diverge after its
#: time was spent, so it is refused before the run starts.
MAX_LR = 10

#: Fields that do not change the trajectory of a run (may differ between a run and its resume).
RESUME_FREE_FIELDS = ("checkpoint_every", "num_workers", "log_every", "find_unused_parameters")


@dataclass
class TrainConfig:
    """Iteration-based training settings (mmseg conventions).

    Attributes:
        optimizer: ``"adamw"`` or ``"sgd"``.
        lr: base learning rate, at most :data:`MAX_LR` (operator groups get ``lr * lr_mult``).
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
        seed: seed of initial RNG states, data order and augmentation (0 <= seed < 2**32, as numpy).
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
        world_size: data-parallel processes (DDP ranks, one GPU each on CUDA) the run is meant
            for; ``batch_size`` is per process, so a step sees ``world_size * batch_size`` images.
            It changes the experiment, so it is part of a cell's id; ``upbench run`` starts that
            many processes per cell (see :mod:`upbench.executors.ddp`). Inside a process group of
            another size, :func:`~upbench.training.train` refuses a ``world_size`` above 1.
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: Annotated[float, Bounds(gt=0, le=MAX_LR)] = 6e-5
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
    seed: Seed = 0
    deterministic: bool = False
    amp: bool = False
    checkpoint_every: NonNegativeInt = 0
    num_workers: NonNegativeInt = 0
    log_every: PositiveInt = 1
    find_unused_parameters: bool = False
    accumulate: PositiveInt = 1
    poly_begin: NonNegativeInt = 0
    custom_keys: dict[str, dict[str, float]] = field(default_factory=dict)
    custom_keys_names: Literal["mmseg", "segformer"] = "mmseg"
    auto_no_decay: bool = True
    world_size: PositiveInt = 1

    def __post_init__(self) -> None:
        problems = check_fields(self, "train")
        if not problems:
            if self.batch_size % self.accumulate:
                problems.append(
                    f"train.batch_size ({self.batch_size}) must be a multiple of train.accumulate ({self.accumulate})"
                )
            if self.poly_begin >= self.iters:
                problems.append(f"train.poly_begin ({self.poly_begin}) must be below train.iters ({self.iters})")
            problems += _custom_keys_problems(self.custom_keys)
        raise_if(problems, ConfigError)
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def compute_dtype(self, device: str | torch.device) -> str:
        """The dtype the forward pass runs in on ``device``: float16 under AMP on CUDA, else float32."""
        return "float16" if self.amp and torch.device(device).type == "cuda" else "float32"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def field_default(cls, name: str) -> Any:
        """The default of field ``name`` (for settings saved before the field existed)."""
        return asdict(cls())[name]


def _custom_keys_problems(custom_keys: dict[str, Any]) -> list[str]:
    """What is wrong with an mmseg-style ``custom_keys`` table (keys ``lr_mult``/``decay_mult``, numbers >= 0)."""
    out = []
    for key, mults in custom_keys.items():
        if not isinstance(mults, dict):
            out.append(f"train.custom_keys.{key} must be a table like {{lr_mult = 10.0}}, got {mults!r}")
            continue
        for name, value in mults.items():
            if name not in ("lr_mult", "decay_mult"):
                out.append(f"train.custom_keys.{key}: unknown key '{name}'; valid keys: lr_mult, decay_mult")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                out.append(f"train.custom_keys.{key}.{name} must be a number >= 0, got {value!r}")
    return out
