"""Multi-process data parallel helpers (torchrun / DistributedDataParallel).

Launched with ``torchrun --nproc_per_node=N script.py``, :func:`init_distributed` reads the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and starts
the process group: NCCL for a CUDA model on a valid local GPU, gloo otherwise. Without those variables
everything runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` and its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(backend: str | None = None, device: torch.device | str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op without it).

    Each process uses ``cuda:LOCAL_RANK`` and NCCL only when the model is meant for CUDA
    (``device`` is a CUDA device, or ``None`` and CUDA is available) *and* ``LOCAL_RANK`` names a
    visible GPU; otherwise the CPU and gloo (e.g. a CPU model on a machine with one GPU, or more
    ranks than GPUs).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    cuda = wants_cuda and torch.cuda.is_available() and 0 <= local < torch.cuda.device_count()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"), rank=rank, world_size=world)
    return DistInfo(rank, world, local, device)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, ``(0, 1)`` outside one."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all ranks in place (no-op outside a process group)."""
    return all_reduce_(tensor, "sum")


def all_reduce_(tensor: Tensor, reduce: str) -> Tensor:
    """Merge ``tensor`` over all ranks in place by ``reduce`` (``sum``, ``max`` or ``min``; no-op
    outside a process group)."""
    if is_distributed():
        op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[reduce]
        dist.all_reduce(tensor, op=op)
    return tensor


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if is_distributed():
        dist.barrier()
