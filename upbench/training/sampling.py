"""Reproducible, resumable data order for iteration-based training.

Epoch ``e`` visits the dataset in the order ``randperm(n)`` drawn from a generator seeded with
``(seed, e)``; in a process group the order is padded to a multiple of the world size and rank
``r`` takes every ``world``-th index (as ``DistributedSampler``). Iteration ``t`` therefore always
sees the same batch, and a resumed run can start in the middle of an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from upbench.errors import ConfigError


def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The indices that rank ``rank`` visits in ``epoch``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    per_rank = -(-n // world_size)
    order += order[: per_rank * world_size - n]
    return order[rank::world_size]


class ResumableSampler(Sampler[int]):
    """Indices for ``iters`` batches of ``batch_size``, starting at iteration ``start``.

    Incomplete batches at the end of an epoch are dropped, as with ``drop_last=True``.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        iters: int,
        *,
        seed: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        per_rank = -(-n // world_size)
        if per_rank < batch_size:
            raise ConfigError(
                f"the training set has {n} samples ({per_rank} per process) but batch_size is {batch_size}; "
                "use a smaller batch_size or a larger dataset"
            )
        self.n, self.batch_size, self.iters, self.start = n, batch_size, iters, start
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.batches_per_epoch = per_rank // batch_size

    def __len__(self) -> int:
        return (self.iters - self.start) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        t = self.start
        while t < self.iters:
            epoch, first = divmod(t, self.batches_per_epoch)
            order = epoch_order(self.n, self.seed, epoch, self.rank, self.world_size)
            for b in range(first, self.batches_per_epoch):
                if t >= self.iters:
                    return
                yield from order[b * self.batch_size : (b + 1) * self.batch_size]
                t += 1
