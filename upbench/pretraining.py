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
from typing import Annotated, Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from upbench import __version__
from upbench.architectures.mit import MiT
from upbench.architectures.presets import MIT_PRESETS, VIT_PRESETS, lookup
from upbench.architectures.vit import ViT
from upbench.errors import ConfigError
from upbench.validation import Bounds, PositiveFloat, PositiveInt, check_fields, raise_if


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
        balance: weight each class's term of the loss by ``share ** -balance`` (its pixel share in
            the first 256 pool images), normalised to mean 1: 0 = plain soft cross-entropy; 0.5
            lifts the small classes (things, wires, specks) that would otherwise barely move it.
    """

    architecture: Literal["plain", "hierarchical"] = "plain"
    preset: str = "tiny"
    dataset: str = "contextual"
    size: PositiveInt = 128
    pool: PositiveInt = 6144
    iters: PositiveInt = 12000
    batch: PositiveInt = 16
    lr: PositiveFloat = 1e-3
    warmup: PositiveInt = 300
    weight_decay: float = 0.05
    seed: int = 0
    balance: Annotated[float, Bounds(ge=0, le=1)] = 0.5

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


def share_loss(
    logits: list[Tensor], labels: Tensor, strides: list[int], ignore_index: int, weights: Tensor | None = None
) -> Tensor:
    """Mean over the strides of the soft cross-entropy between cell shares and predicted shares
    (each class's term weighted by ``weights``, then divided by the mean weight of the targets)."""
    total = logits[0].new_zeros(())
    for z, s in zip(logits, strides):
        target = share_targets(labels, z.shape[1], s, ignore_index)
        if weights is not None:
            w = weights.view(1, -1, 1, 1)
            total = total - (w * target * F.log_softmax(z, 1)).sum(1).mean() / (w * target).sum(1).mean()
        else:
            total = total - (target * F.log_softmax(z, 1)).sum(1).mean()
    return total / len(logits)


def class_weights(pool: _Pool, config: PretrainConfig) -> Tensor | None:
    """``share ** -balance`` per class from the first 256 pool images, normalised to mean 1."""
    if config.balance == 0:
        return None
    _, labels = pool.batch(list(range(min(256, config.pool))))
    counts = torch.bincount(labels.long().flatten(), minlength=256)[: pool.num_classes].double()
    share = (counts / counts.sum()).clamp_min(1e-4)
    w = share ** (-config.balance)
    return (w / w.mean()).float()


class _Pool:
    """The ``pretrain`` images of a run, generated when first drawn and kept as uint8 (so that a run
    stopped after a few steps has generated only what those steps drew)."""

    def __init__(self, config: PretrainConfig) -> None:
        from upbench.data import build_dataset, dataset_info

        info = dataset_info(config.dataset)
        if "pretrain" not in info.splits:
            raise ConfigError(f"dataset '{config.dataset}' has no 'pretrain' split to pretrain on")
        self.data = build_dataset(config.dataset, split="pretrain", size=config.size, count=config.pool)
        self.num_classes, self.ignore_index = info.num_classes, info.ignore_index
        self.samples: dict[int, tuple[Tensor, Tensor]] = {}
        self.seconds = 0.0

    def batch(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        for i in indices:
            if i not in self.samples:
                t0 = time.perf_counter()
                image, label = self.data.load(i)
                self.samples[i] = (image.round().to(torch.uint8), label.to(torch.uint8))
                self.seconds += time.perf_counter() - t0
        return torch.stack([self.samples[i][0] for i in indices]), torch.stack([self.samples[i][1] for i in indices])


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
    config: PretrainConfig,
    *,
    progress: Callable[[int, float], None] | None = None,
    checkpoints: tuple[int, ...] = (),
    stop_after: int | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Pretrain the encoder; returns its state dict and a record (loss curve summary, time, the
    checksum of the weights after each step in ``checkpoints``). ``stop_after``: end after that
    many steps (the weights are then those of step ``stop_after`` of the full run; for checks)."""
    from upbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    # Pin the intra-op thread count explicitly, even to the value it already has: a process that
    # never called torch.set_num_threads computes some products of the MiT differently from one that
    # did (measured on 2 cores, torch 2.13.0+cpu: step-20 checksums 892f228a... vs 3e4f5e4c...), and
    # the test that checks the record sets the recorded count explicitly.
    torch.set_num_threads(torch.get_num_threads())
    pool = _Pool(config)
    k, ignore = pool.num_classes, pool.ignore_index
    weights = class_weights(pool, config)
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
    t1, generated_before = time.perf_counter(), pool.seconds  # the class weights' images came first
    last = config.iters if stop_after is None else min(config.iters, stop_after)
    for t in range(1, last + 1):
        images, labels = pool.batch(torch.randint(config.pool, (config.batch,), generator=g).tolist())
        x, y = _augment(images, labels.long(), g)
        x = (x.float() - mean) / std
        loss = share_loss(heads(encoder(x)), y, heads.strides, ignore, weights)
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
    heads.eval()
    state = {key: v.detach().clone() for key, v in encoder.state_dict().items()}
    scores = evaluate_heads(encoder, heads, config, k, ignore) if stop_after is None else {}
    tail = losses[-max(1, len(losses) // 20) :]
    record = {
        "config": config.to_dict(),
        "final_loss": sum(tail) / len(tail),
        "first_loss": losses[0],
        "iterations": last,
        "generation_seconds": round(pool.seconds, 1),
        "training_seconds": round(time.perf_counter() - t1 - (pool.seconds - generated_before), 1),
        "params": sum(v.numel() for v in state.values()),
        "val_lr_miou": scores,
        "sha256": state_sha256(state),
        "checkpoint_sha256": {str(t): s for t, s in sums.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "upbench": __version__,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return state, record


@torch.no_grad()
def evaluate_heads(encoder: nn.Module, heads: ShareHeads, config: PretrainConfig, k: int, ignore: int) -> dict:
    """How much semantics the encoder carries: its heads' class shares on the first 64 images of the
    ``val`` split, argmax per cell and upsampled nearest, scored at full resolution (mIoU and IoU per
    class, fractions, per stride); compare with the audit's ``lr_nearest`` ceiling at that stride."""
    from upbench.audit.ceilings import miou
    from upbench.data import build_dataset
    from upbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    val = build_dataset(config.dataset, split="val", size=config.size, count=64)
    samples = [val.load(i) for i in range(len(val))]
    images = torch.stack([image for image, _ in samples])
    labels = [label for _, label in samples]
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    batches = [heads(encoder((images[b : b + 16] - mean) / std)) for b in range(0, len(images), 16)]
    logits = [torch.cat(z) for z in zip(*batches)]
    out = {}
    for z, s in zip(logits, heads.strides):
        preds = z.argmax(1).repeat_interleave(s, 1).repeat_interleave(s, 2)
        scores = miou([p[: lab.shape[0], : lab.shape[1]] for p, lab in zip(preds, labels)], labels, k, ignore)
        out[str(s)] = {"mIoU": scores["mIoU"], "IoU": scores["IoU"]}
    return out


def save_weights(state: dict[str, Tensor], record: dict[str, Any], out: Path, name: str) -> Path:
    """``OUT/NAME.pt`` (the encoder's state dict) and ``OUT/NAME.json`` (the record)."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = out / f"{name}.pt"
    path.write_bytes(buffer.getvalue())
    (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return path
