"""The iteration-based training loop: :func:`train`."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from upbench.errors import ConfigError
from upbench.results import move_aside
from upbench.training.checkpoint import (
    LAST,
    load_checkpoint,
    load_rank_rng,
    rng_states,
    save_checkpoint,
    save_rank_rng,
    set_rng_states,
)
from upbench.training.config import RESUME_FREE_FIELDS, TrainConfig
from upbench.training.distributed import all_reduce_sum_, barrier, is_distributed, rank_and_world
from upbench.training.optim import build_optimizer, build_scheduler
from upbench.training.reproducibility import deterministic_mode, seed_everything
from upbench.training.sampling import ResumableSampler
from upbench.training.train_log import TensorBoardLog


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        final_loss: loss of the last iteration (mean over processes).
        iterations: iterations done in total (including those before a resume).
        wall_time_s: training time in seconds, summed over the sessions of a resumed run.
        loss_history: ``(iteration, loss)`` every ``log_every`` iterations (iteration counts from 1).
        resumed_from: iteration of the checkpoint this call started from (0: fresh start).
        lr_history: ``(iteration, lr)`` of the first parameter group at the same iterations as
            ``loss_history`` (the learning rate the step of that iteration used).
    """

    final_loss: float
    iterations: int
    wall_time_s: float
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    resumed_from: int = 0
    lr_history: list[tuple[int, float]] = field(default_factory=list)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def segmentation_loss(logits: Tensor, labels: Tensor, ignore_index: int) -> Tensor:
    """Pixel-wise cross-entropy; logits are resized (bilinear) to the label size if they differ."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), labels.long(), ignore_index=ignore_index)


def _check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    current = config.to_dict()
    # a field added after the checkpoint was written counts as its default
    old = {k: saved.get(k, TrainConfig.field_default(k)) for k in current}
    diff = [k for k in current if k not in RESUME_FREE_FIELDS and old[k] != current[k]]
    if diff:
        shown = ", ".join(f"{k}: {old[k]!r} -> {current[k]!r}" for k in diff)
        raise ConfigError(
            f"the checkpoint was written with different training settings ({shown}); "
            "use another checkpoint_dir or resume=False"
        )


#: What a checkpoint written by :func:`train` holds (``lr_history`` may be absent in older ones).
CHECKPOINT_KEYS = (
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "rng",
    "iteration",
    "loss_history",
    "wall_time_s",
    "config",
)


def _resumable_state(directory: Path, device: torch.device, owner: dict[str, Any] | None) -> dict[str, Any] | None:
    """The checkpoint in ``directory`` if it loads, has a checkpoint's keys and belongs to ``owner``
    (when given); else None, after moving a rejected file aside with one warning. In a process
    group every rank decides the same (a resume needs them all), and only rank 0 moves the file."""
    path = directory / LAST
    problem, state = "", None
    try:
        state = load_checkpoint(directory, map_location=device)
    except Exception as err:  # noqa: BLE001 - whatever the loader raises: the file cannot be resumed
        problem = f"unreadable checkpoint ({type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]})"
    if state is not None and not problem:
        missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else ["all"]
        if missing:
            problem = f"not a training checkpoint (missing {', '.join(missing)})"
        elif owner is not None and state.get("owner") != owner:
            problem = f"checkpoint of {_owner_text(state.get('owner'))}, not of {_owner_text(owner)}"
    rank, world = rank_and_world()
    if world > 1:  # any rank that cannot resume makes every rank start over
        flag = torch.tensor([1.0 if problem else 0.0], device=device)
        if float(all_reduce_sum_(flag)) > 0 and not problem:
            problem = "another process could not resume from it"
    if not problem:
        return state
    if rank == 0 and path.is_file():
        move_aside(path, problem, "training starts again from iteration 0")
    barrier()
    return None


def _owner_text(owner: Any) -> str:
    if not isinstance(owner, dict):
        return "an unknown cell (none recorded)"
    return ", ".join(f"{k} {v}" for k, v in sorted(owner.items()))


def _accumulate_gradients(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: TrainConfig,
    scaler: torch.amp.GradScaler,
    ignore_index: int,
    use_amp: bool,
) -> Tensor:
    """Backward of the batch in ``config.accumulate`` chunks (mean of the chunks' mean losses).

    Gradients are synchronised across processes only on the last chunk.
    """
    total = torch.zeros((), device=images.device)
    chunks = list(zip(images.chunk(config.accumulate), labels.chunk(config.accumulate), strict=True))
    for i, (x, y) in enumerate(chunks):
        last = i == len(chunks) - 1
        no_sync = getattr(net, "no_sync", None)
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
        autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
        with sync:
            with autocast:
                loss = segmentation_loss(net(x), y, ignore_index) / len(chunks)
            scaler.scale(loss).backward()
        total += loss.detach().float()
    return total


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    ignore_index: int = 255,
    tensorboard_dir: str | Path | None = None,
    owner: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` (``(image, label)`` pairs) for ``config.iters`` iterations.

    The model is trained on the device of its parameters. Inside a process group (torchrun, see
    :mod:`upbench.training.distributed`) it is wrapped in DistributedDataParallel and every rank
    reads its own share of each epoch; ``batch_size`` is per process.

    With ``checkpoint_dir``, a checkpoint (model, optimizer, scheduler, gradient scaler, RNG states,
    iteration, loss history) is written every ``checkpoint_every`` iterations and at the end; with
    ``resume=True`` a run continues from the last one and, with ``num_workers=0``, gives the same
    result as an uninterrupted run (workers draw their augmentation seeds when their loader
    starts, so a resumed run with workers is statistically but not bitwise the same). In a
    process group rank 0 writes the checkpoint and every other rank its own RNG states.

    With ``tensorboard_dir``, the logged loss and learning rate also go to TensorBoard event files
    there while training runs (only when the optional ``tensorboard`` package is installed:
    :class:`upbench.training.train_log.TensorBoardLog`).

    ``owner`` (e.g. the cell id and the hash of its configuration) is written into every
    checkpoint, and a checkpoint is resumed only if it carries the same: a file copied in from
    another run or cell, or one that does not load (truncated, not a checkpoint), is moved aside
    to ``last.pt.corrupt-<timestamp>`` with a warning and training starts from iteration 0,
    instead of failing on every rerun or silently continuing someone else's model.

    Returns:
        :class:`TrainResult`; the model is left in train mode with the final weights.
    """
    core = unwrap(model)
    device = next(core.parameters()).device
    rank, world = rank_and_world()
    if config.world_size > 1 and world != config.world_size:
        raise ConfigError(
            f"train.world_size = {config.world_size} but this process group has {world} process(es): "
            "start it with that many (upbench run does; torchrun --nproc_per_node=N)"
        )
    use_amp = config.compute_dtype(device) == "float16"
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None

    seed_everything(config.seed + rank)
    optimizer = build_optimizer(core, config)
    scheduler = build_scheduler(optimizer, config)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, history, lr_history, past_time = 0, [], [], 0.0
    state = _resumable_state(directory, device, owner) if directory is not None and resume else None
    if state is not None:
        _check_resumable(state["config"], config)
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        own = load_rank_rng(directory, rank) if rank > 0 else None
        set_rng_states(own if own is not None else state["rng"])
        start, history, past_time = state["iteration"], list(state["loss_history"]), state["wall_time_s"]
        lr_history = list(state.get("lr_history", []))  # absent in checkpoints written before it existed

    net = model
    if is_distributed() and not isinstance(model, nn.parallel.DistributedDataParallel):
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(
            core, device_ids=ids, find_unused_parameters=config.find_unused_parameters
        )

    sampler = ResumableSampler(
        len(dataset),
        config.batch_size,
        config.iters,
        seed=config.seed,
        start=start,
        rank=rank,
        world_size=world,
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        generator=torch.Generator().manual_seed(config.seed * 7919 + start),
    )

    def checkpoint(iteration: int, elapsed: float) -> None:
        if directory is not None and rank > 0:
            save_rank_rng(directory, rank)
        if directory is not None and rank == 0:
            save_checkpoint(
                directory,
                {
                    "model": core.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng_states(),
                    "iteration": iteration,
                    "loss_history": history,
                    "lr_history": lr_history,
                    "wall_time_s": elapsed,
                    "config": config.to_dict(),
                    "owner": owner,
                },
            )
        barrier()

    net.train()
    t0 = time.perf_counter()
    t = start
    loss_value = history[-1][1] if history else math.nan
    bar = tqdm(total=config.iters, initial=start, desc="train", disable=not progress or rank != 0, dynamic_ncols=True)
    board = TensorBoardLog(tensorboard_dir, rank)
    with deterministic_mode(config.deterministic), bar, contextlib.closing(board):
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            step_lr = float(optimizer.param_groups[0]["lr"])
            loss = _accumulate_gradients(net, images, labels, config, scaler, ignore_index, use_amp)
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(core.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            t += 1
            mean = all_reduce_sum_(loss.detach().float().clone()) / world
            loss_value = float(mean)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"training diverged: loss is {loss_value} at iteration {t}")
            if t % config.log_every == 0 or t == config.iters:
                history.append((t, loss_value))
                lr_history.append((t, step_lr))
                board.add(t, loss_value, step_lr)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False)
            bar.update(1)
            if config.checkpoint_every and t % config.checkpoint_every == 0 and t < config.iters:
                checkpoint(t, past_time + time.perf_counter() - t0)
    elapsed = past_time + time.perf_counter() - t0
    if t > start or state is None:
        checkpoint(t, elapsed)
    return TrainResult(
        final_loss=loss_value,
        iterations=t,
        wall_time_s=elapsed,
        loss_history=history,
        resumed_from=start,
        lr_history=lr_history,
    )
