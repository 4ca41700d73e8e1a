"""Parameter counts of a module."""

from __future__ import annotations

from torch import nn


def count_params(module: nn.Module) -> dict[str, int]:
    """``{"total": ..., "trainable": ...}``: parameter elements, shared parameters counted once.

    Buffers (e.g. batch-norm running statistics) are not parameters and are not counted.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"count_params needs a torch.nn.Module, got {type(module).__name__}")
    total = trainable = 0
    for p in module.parameters():  # parameters() yields each shared tensor once
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {"total": total, "trainable": trainable}
