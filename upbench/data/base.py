"""The base class of every dataset: load a raw sample, then run a seeded transform pipeline.

Randomness of the augmentation: with ``augment_seed=None`` (the default) each ``__getitem__``
draws the seed of its ``torch.Generator`` from torch's global generator, so
``torch.manual_seed`` (and DataLoader's per-worker seeding) makes an epoch reproducible, as with
torchvision transforms. With an integer ``augment_seed`` the generator of sample ``i`` is seeded
from ``(augment_seed, epoch, i)``: the same sample gets the same augmentation whatever the
worker or the order, and :meth:`SegmentationDataset.set_epoch` changes it from epoch to epoch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from upbench.data.transforms import Compose


def mix_seed(*values: int) -> int:
    """A 63-bit seed mixed from ``values`` (numpy ``SeedSequence``: nearby inputs give unrelated seeds)."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SegmentationDataset(Dataset[tuple[Tensor, Tensor]]):
    """Yields ``transform(*load(i))``; subclasses implement :meth:`load` and ``__len__``."""

    def __init__(self, transform: Compose, *, random: bool, augment_seed: int | None = None) -> None:
        self.transform = transform
        self.random = random  # False: the transform draws nothing (no global RNG state is used)
        self.augment_seed = augment_seed
        self.epoch = 0

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        """The raw sample ``index``: image float ``[3, H, W]`` in [0, 255], label long ``[H, W]``."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of ``epoch`` (only matters with an integer ``augment_seed``)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator:
        """The generator that drives the random transforms of sample ``index`` (see module doc)."""
        if self.augment_seed is None:
            seed = int(torch.randint(2**62, ()))
        else:
            seed = mix_seed(self.augment_seed, self.epoch, index)
        return torch.Generator().manual_seed(seed)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        index %= len(self)
        image, label = self.load(index)
        return self.transform(image, label, self.generator(index) if self.random else None)
