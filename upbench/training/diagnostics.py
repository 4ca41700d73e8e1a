"""Did a training run let the operator learn? Two numbers per train cell (issue #14, item 4).

- ``operator_weight_change``: ``||theta_end - theta_init|| / ||theta_init||`` over the parameters of
  the model's upsampler instances (their own parameters, not the image stem), one L2 norm over all
  of them. ``None`` for parameter-free operators. A value near 0 means the operator did not move.
- ``loss_trend_last10``: the least-squares line through the logged losses of the last 10 % of the
  iterations, its rise over that window divided by the mean loss there. About 0: the loss has
  flattened; clearly negative (e.g. -0.05: still falling by 5 % over the last tenth): the run was
  stopped while still learning. ``None`` with fewer than 3 logged points in the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

LAST_FRACTION = 0.1


def snapshot(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    """Detached float64 copies of the parameters of ``modules`` (the state to compare against)."""
    return [p.detach().to("cpu", torch.float64).clone() for m in modules for p in m.parameters()]


def relative_weight_change(before: Sequence[torch.Tensor], modules: Iterable[nn.Module]) -> float | None:
    """``||after - before|| / ||before||`` over all parameters of ``modules`` (``None`` without any)."""
    after = snapshot(modules)
    if not before:
        return None
    if len(after) != len(before):
        raise ValueError(f"{len(before)} parameters were snapshotted but the modules now have {len(after)}")
    diff = sum(float((a - b).pow(2).sum()) for a, b in zip(after, before))
    ref = sum(float(b.pow(2).sum()) for b in before)
    return (diff / ref) ** 0.5 if ref > 0 else (float("inf") if diff > 0 else 0.0)


def loss_window(history: Sequence[tuple[int, float]], fraction: float = LAST_FRACTION) -> list[tuple[int, float]]:
    """The logged ``(iteration, loss)`` pairs of the last ``fraction`` of the iterations (at least
    the last one): the window :func:`loss_trend` fits, and the one any rule built on it reads."""
    if not history:
        return []
    last_iter = history[-1][0]
    start = last_iter - max(1, round(fraction * last_iter))
    return [(i, loss) for i, loss in history if i > start]


def loss_trend(history: Sequence[tuple[int, float]], fraction: float = LAST_FRACTION) -> float | None:
    """Fitted loss change over the last ``fraction`` of the iterations, relative to its mean loss there."""
    window = loss_window(history, fraction)
    if len(window) < 3:
        return None
    its = torch.tensor([i for i, _ in window], dtype=torch.float64)
    losses = torch.tensor([loss for _, loss in window], dtype=torch.float64)
    centred = its - its.mean()
    slope = float((centred * (losses - losses.mean())).sum() / centred.pow(2).sum())
    mean = float(losses.mean())
    return slope * float(its[-1] - its[0]) / mean if mean != 0 else None
