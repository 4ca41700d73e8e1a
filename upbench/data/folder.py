"""Datasets of image and label files on disk: root lookup, layout checks, file pairing, reading.

Every problem with the files (a missing root, a missing folder, an image without its label, a
label that is not a single-channel class map, a size mismatch) raises
:class:`~upbench.errors.DatasetError` with one message that names what was expected where.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from upbench.data.base import SegmentationDataset
from upbench.data.pipelines import as_count, make_transform
from upbench.data.transforms import Compose
from upbench.errors import DatasetError

DATA_ENV = "UPBENCH_DATA"
LabelDecoder = Callable[[np.ndarray], np.ndarray]


def data_root(root: str | Path | None) -> Path:
    """``root``, or ``$UPBENCH_DATA``, or ``./data``."""
    return Path(root if root is not None else os.environ.get(DATA_ENV, "data")).expanduser()


def find_dataset_dir(
    root: str | Path | None, candidates: Sequence[str], required: Sequence[str], title: str, layout: str
) -> Path:
    """The first ``root / candidate`` that has every folder in ``required`` (``root`` or a parent of it)."""
    base = data_root(root)
    if not base.is_dir():
        hint = f"pass root=... or set ${DATA_ENV}"
        raise DatasetError(f"{title}: the data root {base} does not exist; expected {layout} there ({hint})")
    tried = [base / c for c in candidates]
    for d in tried:
        if all((d / r).is_dir() for r in required):
            return d
    for d in tried:  # the nearest partial match gets the precise message
        if any((d / r.split("/")[0]).is_dir() for r in required):
            missing = ", ".join(str(d / r) for r in required if not (d / r).is_dir())
            raise DatasetError(f"{title} at {d}: missing folder(s) {missing}; expected {layout}")
    raise DatasetError(f"{title} not found: expected {layout} in {' or '.join(str(d) for d in tried)}")


def pair_files(
    images: Iterable[Path], label_of: Callable[[Path], Path], title: str, where: Path, hint: str = ""
) -> list[tuple[Path, Path]]:
    """``(image, label)`` pairs, sorted; :class:`DatasetError` if there are none or labels are missing."""
    pairs = sorted((image, label_of(image)) for image in images)
    if not pairs:
        raise DatasetError(f"{title}: no images found in {where}")
    missing = [label for _, label in pairs if not label.is_file()]
    if missing:
        raise DatasetError(
            f"{title}: {len(missing)} of {len(pairs)} images have no label file, e.g. expected {missing[0]}"
            + (f"; {hint}" if hint else "")
        )
    return pairs


def read_image(path: Path) -> Tensor:
    """An RGB image as float ``[3, H, W]`` with values in [0, 255]."""
    with Image.open(path) as im:
        array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float()


def read_label(path: Path) -> np.ndarray:
    """The class indices of a label PNG (mode ``L`` or palette ``P``) as ``uint8 [H, W]``."""
    with Image.open(path) as im:
        if im.mode not in ("L", "P"):
            expected = "a single-channel class-index PNG (mode L or P)"
            raise DatasetError(f"{path}: label image has mode {im.mode}; expected {expected}")
        return np.asarray(im, dtype=np.uint8).copy()


class FolderDataset(SegmentationDataset):
    """Pairs of image and label files; ``decode`` maps raw label values to training ids."""

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        *,
        num_classes: int,
        decode: LabelDecoder | None,
        transform: Compose,
        random: bool,
        augment_seed: int | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(transform, random=random, augment_seed=augment_seed)
        self.pairs = list(pairs)
        self.num_classes, self.decode, self.ignore_index = num_classes, decode, ignore_index

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, label_path = self.pairs[index]
        image, raw = read_image(image_path), read_label(label_path)
        if tuple(image.shape[-2:]) != raw.shape:
            raise DatasetError(
                f"{image_path} is {tuple(image.shape[-2:])} (H, W) but its label {label_path} is {raw.shape}"
            )
        label = torch.from_numpy((self.decode(raw) if self.decode else raw).astype(np.int64))
        bad = label[(label >= self.num_classes) & (label != self.ignore_index)]
        if bad.numel():
            raise DatasetError(
                f"{label_path}: label values {sorted(set(bad.tolist()))[:5]} are outside "
                f"0..{self.num_classes - 1} and not {self.ignore_index}"
            )
        return image, label


def folder_dataset(
    pairs: Sequence[tuple[Path, Path]],
    split: str,
    *,
    num_classes: int,
    decode: Callable[[np.ndarray], np.ndarray] | None = None,
    count: int | None = None,
    augment_seed: int | None = None,
    **pipeline: Any,
) -> FolderDataset:
    """A :class:`FolderDataset` over the first ``count`` pairs with the standard pipeline of ``split``.

    ``pipeline`` holds the options of :func:`~upbench.data.pipelines.make_transform` (augment,
    scale, crop_size, ratio_range, cat_max_ratio, test_scale).
    """
    transform, random = make_transform(split, **pipeline)
    return FolderDataset(
        pairs[: as_count(count)],
        num_classes=num_classes,
        decode=decode,
        transform=transform,
        random=random,
        augment_seed=augment_seed,
    )
