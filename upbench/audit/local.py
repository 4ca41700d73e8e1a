"""The local ceiling: the best a classifier that sees only a small window of the image can do.

A conv net whose receptive field is exactly ``rf`` px: an ``rf x rf`` convolution followed by two
1x1 layers (ReLU between), i.e. a two-hidden-layer MLP of the ``rf x rf`` patch around each pixel,
which can represent any patch-to-class rule the window allows. It is trained with cross-entropy on
patches around random pixels of the full-resolution training images (the same per-pixel objective
as training on whole images, with less correlated batches) by AdamW at a constant learning rate
after a short warm-up, so that a flat loss over the last quarter means it has converged, not that
its step size was decayed away. Whatever it scores, the label can be read off the image locally:
an upsampler comparison on such data measures how much image reaches the output, not upsampling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Annotated

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from upbench.errors import ConfigError
from upbench.training.diagnostics import loss_trend, loss_window
from upbench.validation import Bounds, PositiveFloat, PositiveInt, check_fields, raise_if

OddRF = Annotated[int, Bounds(ge=3, le=63, odd=True)]

#: Converged: the training loss changed by at most this fraction over the last quarter (or by at
#: most ZERO_LOSS nats: a loss that has reached zero is flat whatever its relative change)...
LAST_QUARTER = 0.25  # the convergence rule reads the last quarter of the logged losses
FLAT = 0.03
ZERO_LOSS = 1e-3
#: ... and the val mIoU by at most this much (a fraction) between three quarters and the end.
STABLE = 0.01


@dataclass(frozen=True)
class LocalSchedule:
    """How the local classifier is trained (recorded with every audit).

    Attributes:
        rf: receptive field in px (odd): the side of the patch the net sees.
        width: channels of both hidden layers.
        iters: optimizer steps.
        batch: pixels (patches) per step.
        lr: AdamW learning rate (constant after ``warmup`` linear steps).
        warmup: warm-up steps.
    """

    rf: OddRF = 7
    width: PositiveInt = 128
    iters: PositiveInt = 12000
    batch: PositiveInt = 4096
    lr: PositiveFloat = 4e-3
    warmup: PositiveInt = 100

    def __post_init__(self) -> None:
        raise_if(check_fields(self, "audit.local"), ConfigError)

    def to_dict(self) -> dict:
        return asdict(self)


def local_net(rf: int, width: int, num_classes: int) -> nn.Sequential:
    """An ``rf x rf`` convolution and two 1x1 layers: receptive field exactly ``rf`` px."""
    return nn.Sequential(
        nn.Conv2d(3, width, rf, padding=rf // 2),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, num_classes, 1),
    )


def _inputs(images: Tensor) -> Tensor:
    return images.float() / 255 - 0.5


def _patch_logits(net: nn.Sequential, patches: Tensor) -> Tensor:
    """``[N, K]`` logits of ``[N, 3, rf, rf]`` patches: the net at one pixel, as matrix products."""
    first, _, hidden, _, last = net
    x = F.relu(F.linear(patches.flatten(1), first.weight.flatten(1), first.bias))
    x = F.relu(F.linear(x, hidden.weight.flatten(1), hidden.bias))
    return F.linear(x, last.weight.flatten(1), last.bias)


class _PixelSampler:
    """Patches around random pixels of a set of raw samples of any sizes (images padded by
    ``rf // 2`` with zeros after the input scaling, as the convolution pads them)."""

    def __init__(self, samples: Sequence[tuple[Tensor, Tensor]], rf: int, ignore_index: int) -> None:
        h = max(label.shape[0] for _, label in samples)
        w = max(label.shape[1] for _, label in samples)
        r = rf // 2
        self.images = torch.zeros(len(samples), 3, h + 2 * r, w + 2 * r)
        self.labels = torch.full((len(samples), h, w), ignore_index, dtype=torch.long)
        self.sizes = torch.tensor([tuple(label.shape) for _, label in samples], dtype=torch.float64)
        for i, (image, label) in enumerate(samples):
            ih, iw = label.shape
            self.images[i, :, r : r + ih, r : r + iw] = _inputs(image)
            self.labels[i, :ih, :iw] = label
        self.offsets = torch.arange(rf)

    def sample(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        k = torch.randint(len(self.images), (n,), generator=g)
        y = (torch.rand(n, generator=g, dtype=torch.float64) * self.sizes[k, 0]).long()
        x = (torch.rand(n, generator=g, dtype=torch.float64) * self.sizes[k, 1]).long()
        _, c, hp, wp = self.images.shape
        rows = (y[:, None] + self.offsets[None])[:, None, :, None]
        cols = (x[:, None] + self.offsets[None])[:, None, None, :]
        planes = k[:, None, None, None] * c + torch.arange(c)[None, :, None, None]
        patches = self.images.view(-1)[(planes * hp + rows) * wp + cols]  # one flat gather: fast on CPU
        return patches, self.labels[k, y, x]


def train_local(
    samples: Sequence[tuple[Tensor, Tensor]],
    num_classes: int,
    ignore_index: int,
    schedule: LocalSchedule,
    *,
    seed: int = 0,
    step_callback: Callable[[int, float], None] | None = None,
    score: Callable[[nn.Module], float] | None = None,
) -> tuple[nn.Module, dict]:
    """Train the local classifier on raw ``(image, label)`` samples; returns the net and a summary:
    ``final_loss`` (mean of the last 5 % of steps), ``loss_trend`` (relative change fitted over the
    last quarter), ``score_three_quarters`` (``score(net)`` after three quarters of the steps, if
    ``score`` is given: the val mIoU in an audit) and ``converged`` (``has_converged``)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = local_net(schedule.rf, schedule.width, num_classes)
    sampler = _PixelSampler(samples, schedule.rf, ignore_index)
    optimizer = torch.optim.AdamW(net.parameters(), lr=schedule.lr, weight_decay=1e-4)
    warm = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: min(1.0, (t + 1) / schedule.warmup))
    history: list[tuple[int, float]] = []
    net.train()
    at_three_quarters = None
    for t in range(1, schedule.iters + 1):
        patches, labels = sampler.sample(schedule.batch, g)
        loss = F.cross_entropy(_patch_logits(net, patches), labels, ignore_index=ignore_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        warm.step()
        value = float(loss.detach())
        history.append((t, value))
        if step_callback is not None:
            step_callback(t, value)
        if score is not None and t == (3 * schedule.iters) // 4:
            net.eval()
            at_three_quarters = score(net)
            net.train()
    net.eval()
    tail = [loss for _, loss in history[-max(1, len(history) // 20) :]]
    at_end = None if at_three_quarters is None else score(net)
    summary = {
        "final_loss": sum(tail) / len(tail),
        "loss_trend": loss_trend(history, fraction=LAST_QUARTER),
        "score_three_quarters": at_three_quarters,
        "converged": has_converged(history, at_three_quarters, at_end),
    }
    return net, summary


def has_converged(history: list[tuple[int, float]], at_three_quarters: float | None, at_end: float | None) -> bool:
    """The convergence rule: the loss fitted over the last quarter changed by at most ``FLAT`` of its
    mean there, or by at most ``ZERO_LOSS`` nats (a loss at zero is flat whatever its relative
    change), and, where scores are given, the score moved by at most ``STABLE`` from three quarters
    of the steps to the end."""
    trend = loss_trend(history, fraction=LAST_QUARTER)
    if trend is None:
        return False
    window = [loss for _, loss in loss_window(history, fraction=LAST_QUARTER)]
    flat = abs(trend) <= FLAT or abs(trend) * sum(window) / len(window) <= ZERO_LOSS
    stable = at_three_quarters is None or abs(at_end - at_three_quarters) <= STABLE
    return flat and stable


@torch.no_grad()
def predict_local(net: nn.Module, image: Tensor) -> Tensor:
    """The local classifier's label map of one raw image ``[3, H, W]``."""
    return net(_inputs(image[None]))[0].argmax(0)
