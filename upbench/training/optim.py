"""Optimizers and the poly learning-rate schedule with linear warm-up."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from upbench.training.config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over ``model.param_groups(lr, weight_decay)`` (or all parameters).

    Every group keeps its ``lr_mult``: the schedule scales each group's own initial rate, so an
    operator group at ``lr * lr_mult`` stays ``lr_mult`` times the base rate throughout.
    """
    if hasattr(model, "param_groups"):
        groups: list[dict[str, Any]] = model.param_groups(
            config.lr,
            config.weight_decay,
            custom_keys=config.custom_keys,
            custom_keys_names=config.custom_keys_names,
            auto_no_decay=config.auto_no_decay,
        )
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": params, "lr": config.lr, "weight_decay": config.weight_decay, "lr_mult": 1.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


class PolyWarmup:
    """Learning-rate factor at iteration ``t``: linear warm-up, then poly decay (mmseg semantics).

    ``poly(t) = (1 - t / iters) ** power`` scaled between ``min_lr / lr`` and 1; during the first
    ``warmup_iters`` iterations the factor is multiplied by
    ``1 - (1 - t / warmup_iters) * (1 - warmup_ratio)`` (mmcv's linear warm-up), so it starts at
    ``warmup_ratio`` times the poly value. With ``poly_begin`` > 0 the poly decay runs from
    ``poly_begin`` to ``iters`` and is 1 before (mmengine's ``PolyLR(begin=poly_begin)`` after a
    ``LinearLR`` warm-up, as mmseg's SegFormer configs).
    """

    def __init__(self, config: TrainConfig) -> None:
        self.iters = config.iters
        self.power = config.poly_power
        self.floor = config.min_lr / config.lr if config.lr > 0 else 0.0
        self.warmup_iters = config.warmup_iters
        self.warmup_ratio = config.warmup_ratio
        self.begin = config.poly_begin

    def __call__(self, t: int) -> float:
        progress = min(max(t - self.begin, 0), self.iters - self.begin) / (self.iters - self.begin)
        factor = (1.0 - self.floor) * (1.0 - progress) ** self.power + self.floor
        if t < self.warmup_iters:
            factor *= 1.0 - (1.0 - t / self.warmup_iters) * (1.0 - self.warmup_ratio)
        return factor


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> LambdaLR:
    """A per-iteration :class:`LambdaLR` applying :class:`PolyWarmup` to every group."""
    return LambdaLR(optimizer, PolyWarmup(config))
