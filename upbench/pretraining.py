"""Pretraining of the shipped encoders on a generated dataset, with no upsampler anywhere.

The papers start their decoders from ImageNet-pretrained encoders, whose LR features already carry
the semantics; upbench's CPU suites do the same on the built-in ``contextual`` data: the tiny ViT
and MiT encoders are pretrained on its ``pretrain`` split (its own seeds, never drawn by a suite's
train or val split) with an objective in which no operator takes part: every LR feature predicts,
through a 1x1 linear head, the share of each class among the pixels of its cell (soft
cross-entropy against the area-pooled one-hot label; the MiT does so at each of its four strides,
the ViT at stride 16). The heads are thrown away; the encoder's state dict is saved in upbench's
own layout, which :func:`upbench.architectures.pretrained.load_pretrained` reads.

``python -m upbench pretrain ARCHITECTURE --preset tiny --out DIR`` runs it (see ``--help``);
the shipped files, their checksums and the commands that made them are listed in
``upbench/weights/manifest.json`` (:mod:`upbench.architectures.shipped`). Generation is deterministic
per sample and training is seeded, so the same command on the same torch build and thread count
gives the same bytes (checked for the first steps by the tests; see ``docs/pretrained.md``).
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from upbench import __version__
from upbench.architectures.mit import MiT
from upbench.architectures.presets import MIT_PRESETS, VIT_PRESETS, lookup
from upbench.architectures.vit import ViT
from upbench.errors import ConfigError
from upbench.validation import PositiveFloat, PositiveInt, check_fields, raise_if


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run (everything that decides the weights).

    Attributes:
        architecture: ``"plain"`` (ViT, stride 16) or ``"hierarchical"`` (MiT, strides 4-32).
        preset: the encoder's preset.
        dataset: a generated dataset with a ``pretrain`` split.
        size: image side in px.
        pool: distinct images drawn from the ``pretrain`` split (seeds ``0 .. pool - 1``).
        iters: optimizer steps.
        batch: images per step (each flipped / rotated by a multiple of 90 degrees at random).
        lr: AdamW peak learning rate (linear warm-up over ``warmup`` steps, then cosine to 0).
        warmup: warm-up steps.
        weight_decay: AdamW weight decay.
        seed: initialisation, sampling and augmentation seed.
    """

    architecture: Literal["plain", "hierarchical"] = "plain"
    preset: str = "tiny"
    dataset: str = "contextual"
    size: PositiveInt = 128
    pool: PositiveInt = 4096
    iters: PositiveInt = 6000
    batch: PositiveInt = 16
    lr: PositiveFloat = 1e-3
    warmup: PositiveInt = 300
    weight_decay: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        raise_if(check_fields(self, "pretrain"), ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_encoder(architecture: str, preset: str) -> nn.Module:
    """A fresh ViT (``plain``) or MiT (``hierarchical``) encoder of ``preset``."""
    if architecture == "plain":
        return ViT(lookup(VIT_PRESETS, preset, architecture))  # type: ignore[arg-type]
    if architecture == "hierarchical":
        return MiT(lookup(MIT_PRESETS, preset, architecture))  # type: ignore[arg-type]
    raise ConfigError(f"pretraining is for the 'plain' and 'hierarchical' encoders, not '{architecture}'")


class ShareHeads(nn.Module):
    """1x1 linear heads from each encoder output to class logits, and their strides."""

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        if isinstance(encoder, MiT):
            dims, self.strides = list(encoder.dims), [4, 8, 16, 32]
        else:
            dims, self.strides = [encoder.dim], [16]
        self.heads = nn.ModuleList(nn.Conv2d(d, num_classes, 1) for d in dims)

    def forward(self, features: Tensor | list[Tensor]) -> list[Tensor]:
        maps = features if isinstance(features, list | tuple) else [features]
        return [head(f) for head, f in zip(self.heads, maps)]


def share_targets(labels: Tensor, num_classes: int, stride: int, ignore_index: int) -> Tensor:
    """``[B, K, H / s, W / s]``: class shares among the labelled pixels of each ``s x s`` cell."""
    valid = labels != ignore_index
    onehot = F.one_hot(torch.where(valid, labels, 0), num_classes).permute(0, 3, 1, 2).float() * valid[:, None]
    sums = F.avg_pool2d(onehot, stride, divisor_override=1)
    return sums / sums.sum(1, keepdim=True).clamp_min(1)


def share_loss(logits: list[Tensor], labels: Tensor, strides: list[int], ignore_index: int) -> Tensor:
    """Mean over the strides of the soft cross-entropy between cell shares and predicted shares."""
    total = logits[0].new_zeros(())
    for z, s in zip(logits, strides):
        target = share_targets(labels, z.shape[1], s, ignore_index)
        total = total - (target * F.log_softmax(z, 1)).sum(1).mean()
    return total / len(logits)


def _pool(config: PretrainConfig) -> tuple[Tensor, Tensor, int, int]:
    """The ``pretrain`` images (uint8) and labels, normalised as the datasets do on the fly."""
    from upbench.data import build_dataset, dataset_info

    info = dataset_info(config.dataset)
    if "pretrain" not in info.splits:
        raise ConfigError(f"dataset '{config.dataset}' has no 'pretrain' split to pretrain on")
    data = build_dataset(config.dataset, split="pretrain", size=config.size, count=config.pool)
    images = torch.empty(config.pool, 3, config.size, config.size, dtype=torch.uint8)
    labels = torch.empty(config.pool, config.size, config.size, dtype=torch.uint8)
    for i in range(config.pool):
        image, label = data.load(i)
        images[i], labels[i] = image.round().to(torch.uint8), label.to(torch.uint8)
    return images, labels, info.num_classes, info.ignore_index


def _augment(images: Tensor, labels: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """A random flip and rotation by a multiple of 90 degrees per image (the classes do not change)."""
    out_i, out_l = [], []
    for image, label in zip(images, labels):
        k, flip = int(torch.randint(4, (), generator=g)), bool(torch.randint(2, (), generator=g))
        image, label = torch.rot90(image, k, (1, 2)), torch.rot90(label, k, (0, 1))
        if flip:
            image, label = image.flip(2), label.flip(1)
        out_i.append(image)
        out_l.append(label)
    return torch.stack(out_i), torch.stack(out_l)


def state_sha256(state: dict[str, Tensor]) -> str:
    """Checksum of a state dict's names, shapes and bytes (independent of the file format)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def pretrain(
    config: PretrainConfig, *, progress: Callable[[int, float], None] | None = None, checkpoints: tuple[int, ...] = ()
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Pretrain the encoder; returns its state dict and a record (loss curve summary, time, the
    checksum of the weights after each step in ``checkpoints``)."""
    from upbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    t0 = time.perf_counter()
    images, labels, k, ignore = _pool(config)
    generation_s = time.perf_counter() - t0
    torch.manual_seed(config.seed)
    encoder = build_encoder(config.architecture, config.preset)
    heads = ShareHeads(encoder, k)
    params = list(encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    def factor(t: int) -> float:
        if t < config.warmup:
            return (t + 1) / config.warmup
        done = (t - config.warmup) / max(1, config.iters - config.warmup)
        return 0.5 * (1 + torch.cos(torch.tensor(done * torch.pi)).item())

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    sums: dict[int, str] = {}
    encoder.train()
    heads.train()
    t1 = time.perf_counter()
    for t in range(1, config.iters + 1):
        idx = torch.randint(config.pool, (config.batch,), generator=g)
        x, y = _augment(images[idx], labels[idx].long(), g)
        x = (x.float() - mean) / std
        loss = share_loss(heads(encoder(x)), y, heads.strides, ignore)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(t, losses[-1])
        if t in checkpoints:
            sums[t] = state_sha256(encoder.state_dict())
    encoder.eval()
    state = {key: v.detach().clone() for key, v in encoder.state_dict().items()}
    tail = losses[-max(1, len(losses) // 20) :]
    record = {
        "config": config.to_dict(),
        "final_loss": sum(tail) / len(tail),
        "first_loss": losses[0],
        "generation_seconds": round(generation_s, 1),
        "training_seconds": round(time.perf_counter() - t1, 1),
        "params": sum(v.numel() for v in state.values()),
        "sha256": state_sha256(state),
        "checkpoint_sha256": {str(t): s for t, s in sums.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "upbench": __version__,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return state, record


def save_weights(state: dict[str, Tensor], record: dict[str, Any], out: Path, name: str) -> Path:
    """``OUT/NAME.pt`` (the encoder's state dict) and ``OUT/NAME.json`` (the record)."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = out / f"{name}.pt"
    path.write_bytes(buffer.getvalue())
    (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return path
