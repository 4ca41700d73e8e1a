"""``colourcoded``: the first built-in generator, kept as the demonstration of a shortcut.

**Do not rank upsamplers on it.** Each class has its own colour, so a rule that gives every pixel
the class whose colour is nearest labels it perfectly (100 mIoU), and a 3-layer conv net that sees
7 px scores 99.6 mIoU: the label is a per-pixel function of the image, and an upsampler comparison
on it measures how much image colour reaches the classifier (a 1x1 projection of the guide beats
every operator). ``python -m upbench audit colourcoded`` shows it; the default dataset,
``contextual``, is built to avoid it. It was called ``synthetic`` until upbench 0.1's reports
``reports/*-colourcoded`` were made, and is kept so that they stay reproducible.

No files and no download: sample ``i`` of a split is generated from the seed
``mix_seed(seed, split_id, i)`` (``split_id`` 0 for train, 1 for val, so the splits never share
a seed), by its own ``torch.Generator``: the same ``(seed, split, i)`` always gives the same
sample, whatever the DataLoader worker or the order of access.

Eight classes, each with its own colour (jittered per image; the shortcut), while the small and
thin ones vanish at coarse resolutions:

* large regions with sharp, curved boundaries (a warped Voronoi partition plus ellipses), each
  with a texture: ``background`` (smooth gradient), ``stripes`` (sinusoid, period 5 to 9 px),
  ``checker`` (cells of 3 to 5 px), ``speckle`` (per-pixel noise);
* small objects: ``dot`` (discs of radius 1 to 3.5 px), ``box`` (rotated rectangles 3 to 9 px);
* thin structures: ``wire`` (straight segments 1, 2 or 3 px wide), ``ring`` (circles and arcs
  1 or 2 px wide).

Object counts grow with the image area (wires and rings with its side), so the statistics are
similar at every size; widths stay in pixels. Images have mild Gaussian noise (sigma 4 on the
[0, 255] scale).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import Tensor

from upbench.data.base import SegmentationDataset, mix_seed
from upbench.data.pipelines import as_count, as_pair, make_transform
from upbench.data.registry import register_dataset
from upbench.data.transforms import Compose
from upbench.errors import ConfigError

CLASS_NAMES = ("background", "stripes", "checker", "speckle", "dot", "wire", "ring", "box")
BACKGROUND, STRIPES, CHECKER, SPECKLE, DOT, WIRE, RING, BOX = range(8)
COLOURS = torch.tensor(
    [
        [90, 120, 160],
        [190, 150, 70],
        [70, 150, 80],
        [140, 90, 150],
        [235, 235, 235],
        [25, 25, 35],
        [220, 40, 40],
        [30, 200, 210],
    ],
    dtype=torch.float32,
)
SPLIT_IDS = {"train": 0, "val": 1}
MIN_SIZE, MAX_SIZE = 16, 2048


class _Canvas:
    """Pixel-centre coordinates of an ``H x W`` image and a generator to draw from."""

    def __init__(self, height: int, width: int, generator: torch.Generator) -> None:
        self.h, self.w, self.g = height, width, generator
        self.side = min(height, width)
        self.yy, self.xx = torch.meshgrid(
            torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
        )

    def rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.g)

    def randint(self, low: int, high: int) -> int:
        return int(torch.randint(low, high, (), generator=self.g))

    def window(self, cy: float, cx: float, radius: float) -> tuple[slice, slice]:
        """Rows and columns of the square of half-size ``radius`` around ``(cy, cx)``, clipped."""
        r = math.ceil(radius) + 1
        rows = slice(max(int(cy) - r, 0), min(int(cy) + r + 2, self.h))
        cols = slice(max(int(cx) - r, 0), min(int(cx) + r + 2, self.w))
        return rows, cols


def _regions(c: _Canvas) -> Tensor:
    """Large regions of the four texture classes: a warped Voronoi partition plus ellipses."""
    n = c.randint(3, 8)
    points = c.rand(n, 2) * torch.tensor([c.h, c.w])
    classes = torch.randint(0, 4, (n,), generator=c.g)
    classes[1] = (classes[0] + c.randint(1, 4)) % 4  # at least two region classes
    amp, period, phase = 0.06 * c.side, c.side * (0.3 + 0.5 * c.rand(2)), 2 * math.pi * c.rand(2)
    yw = c.yy + amp * torch.sin(2 * math.pi * c.xx / period[0] + phase[0])
    xw = c.xx + amp * torch.sin(2 * math.pi * c.yy / period[1] + phase[1])
    label, nearest = torch.zeros(c.h, c.w, dtype=torch.long), torch.full((c.h, c.w), math.inf)
    for (py, px), cls in zip(points.tolist(), classes.tolist()):
        dist = (yw - py).square() + (xw - px).square()
        label = torch.where(dist < nearest, cls, label)
        nearest = torch.minimum(dist, nearest)
    for cy, cx, a, b, angle, cls in c.rand(c.randint(1, 4), 6).tolist():
        a, b = (0.06 + 0.16 * a) * c.side, (0.06 + 0.16 * b) * c.side
        cy, cx, angle = cy * c.h, cx * c.w, angle * math.pi
        u = (c.xx - cx) * math.cos(angle) + (c.yy - cy) * math.sin(angle)
        v = (c.yy - cy) * math.cos(angle) - (c.xx - cx) * math.sin(angle)
        label[(u / a) ** 2 + (v / b) ** 2 <= 1] = int(cls * 4)
    return label


def _texture(c: _Canvas, label: Tensor) -> Tensor:
    """Luminance modulation ``[H, W]`` of the region classes (zero elsewhere)."""
    angle, period, cell, tilt = c.rand(4).tolist()
    theta, period, cell = angle * math.pi, 5 + 4 * period, 3 + c.randint(0, 3)
    along = c.xx * math.cos(theta) + c.yy * math.sin(theta)
    tilt_dir = (c.xx * math.cos(tilt * 2 * math.pi) + c.yy * math.sin(tilt * 2 * math.pi)) / c.side
    textures = {
        BACKGROUND: 20 * tilt_dir.clamp(-1, 1),
        STRIPES: 30 * torch.sin(2 * math.pi * along / period),
        CHECKER: 25 * (((c.xx // cell + c.yy // cell) % 2) * 2 - 1),
        SPECKLE: 35 * (c.rand(c.h, c.w) * 2 - 1),
    }
    out = torch.zeros(c.h, c.w)
    for cls, tex in textures.items():
        out = torch.where(label == cls, tex, out)
    return out


def _small_objects(c: _Canvas, label: Tensor, area: float) -> None:
    """Dots (discs of radius 1 to 3.5 px) and boxes (rotated rectangles 3 to 9 px) in place."""
    for cy, cx, r in c.rand(round((8 + c.randint(0, 8)) * area), 3).tolist():
        cy, cx, r = cy * c.h, cx * c.w, 1.0 + 2.5 * r
        rows, cols = c.window(cy, cx, r)
        inside = (c.yy[rows, cols] - cy) ** 2 + (c.xx[rows, cols] - cx) ** 2 <= r * r
        label[rows, cols][inside] = DOT
    for cy, cx, a, b, angle in c.rand(round((4 + c.randint(0, 5)) * area), 5).tolist():
        cy, cx, a, b, angle = cy * c.h, cx * c.w, 1.5 + 3 * a, 1.5 + 3 * b, angle * math.pi
        rows, cols = c.window(cy, cx, math.hypot(a, b))
        dy, dx = c.yy[rows, cols] - cy, c.xx[rows, cols] - cx
        u, v = dx * math.cos(angle) + dy * math.sin(angle), dy * math.cos(angle) - dx * math.sin(angle)
        label[rows, cols][(u.abs() <= a) & (v.abs() <= b)] = BOX


def _thin_structures(c: _Canvas, label: Tensor, side: float) -> None:
    """Rings (width 1 or 2 px) and wires (width 1 to 3 px) in place."""
    for cy, cx, r, w, start, span in c.rand(max(1, round((1 + c.randint(0, 3)) * side)), 6).tolist():
        cy, cx, r = cy * c.h, cx * c.w, (0.05 + 0.2 * r) * c.side
        half = (1 + int(w * 2)) / 2
        rows, cols = c.window(cy, cx, r + half)
        dy, dx = c.yy[rows, cols] - cy, c.xx[rows, cols] - cx
        arc = (torch.atan2(dy, dx) - start * 2 * math.pi) % (2 * math.pi) <= math.pi * (1 + span)
        label[rows, cols][((dy.square() + dx.square()).sqrt() - r).abs().lt(half) & arc] = RING
    for y0, x0, y1, x1, w in c.rand(max(1, round((2 + c.randint(0, 3)) * side)), 5).tolist():
        y0, x0, y1, x1, half = y0 * c.h, x0 * c.w, y1 * c.h, x1 * c.w, (1 + int(w * 3)) / 2
        rows = slice(max(int(min(y0, y1)) - 2, 0), min(int(max(y0, y1)) + 3, c.h))
        cols = slice(max(int(min(x0, x1)) - 2, 0), min(int(max(x0, x1)) + 3, c.w))
        py, px = c.yy[rows, cols] - y0, c.xx[rows, cols] - x0
        dy, dx = y1 - y0, x1 - x0
        t = ((py * dy + px * dx) / max(dy * dy + dx * dx, 1e-6)).clamp(0, 1)
        label[rows, cols][((py - t * dy).square() + (px - t * dx).square()).sqrt() < half] = WIRE


#: Generated samples kept per process (about 0.3 MB each at 128 px): the cells of a suite run one
#: after another in one process and draw the same samples, so each is generated once.
CACHE_SIZE = 2048


def generate(height: int, width: int, seed: int) -> tuple[Tensor, Tensor]:
    """One sample: image float ``[3, H, W]`` in [0, 255] and label long ``[H, W]`` in ``[0, 8)``.

    Deterministic in ``(height, width, seed)``; served from a per-process cache (copies, so that a
    caller may modify what it gets).
    """
    image, label = _generate_cached(height, width, seed)
    return image.clone(), label.clone()


@functools.lru_cache(maxsize=CACHE_SIZE)
def _generate_cached(height: int, width: int, seed: int) -> tuple[Tensor, Tensor]:
    c = _Canvas(height, width, torch.Generator().manual_seed(seed))
    label = _regions(c)
    modulation = _texture(c, label)
    _small_objects(c, label, height * width / 128**2)
    _thin_structures(c, label, c.side / 128)
    colours = COLOURS + 24 * (c.rand(len(CLASS_NAMES), 3) - 0.5)
    image = colours[label].permute(2, 0, 1) + torch.where(label < DOT, modulation, 0)[None]
    image = image + 4 * torch.randn(3, height, width, generator=c.g)
    return image.clamp(0, 255), label


class SyntheticDataset(SegmentationDataset):
    """``count`` generated samples of ``size = (H, W)`` of one split (see the module docstring)."""

    def __init__(
        self,
        *,
        size: tuple[int, int],
        count: int,
        seed: int,
        split: str,
        transform: Compose,
        random: bool,
        augment_seed: int | None = None,
    ) -> None:
        super().__init__(transform, random=random, augment_seed=augment_seed)
        self.size, self.count, self.seed, self.split = size, count, seed, split

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        return generate(*self.size, mix_seed(self.seed, SPLIT_IDS[self.split], index))


@register_dataset(
    "colourcoded",
    num_classes=len(CLASS_NAMES),
    class_names=CLASS_NAMES,
    needs_root=False,
    title="the old generator: one colour per class, a per-pixel colour rule labels it (shortcut demo)",
)
def build_colourcoded(
    split: str,
    root: str | Path | None = None,
    *,
    size: int | tuple[int, int] = 128,
    count: int | None = None,
    seed: int = 0,
    augment: bool = False,
    crop_size: int | tuple[int, int] | None = None,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 1.0,
    augment_seed: int | None = None,
) -> SyntheticDataset:
    """The ``colourcoded`` dataset (the shortcut demonstration; see the module docstring).

    ``size``: image side (or ``(H, W)``), 16 to 2048 px (64 to 512 is the intended range).
    ``count``: samples in the split (default 512 for train, 64 for val). ``seed``: base seed of
    the generation. ``augment``: run the training pipeline (random resize ``ratio_range`` of
    ``size``, crop ``crop_size`` (default ``size``), flip, photometric distortion); off by default
    since every sample is already new. Without augmentation the dataset yields the generated
    image (normalised) and its label, both of size ``size``. ``augment_seed``: see
    :mod:`upbench.data.base`.
    """
    hw = tuple(int(v) for v in as_pair(size, "size", minimum=MIN_SIZE))
    if max(hw) > MAX_SIZE or hw != as_pair(size, "size"):
        raise ConfigError(f"option size = {size!r}: expected integers from {MIN_SIZE} to {MAX_SIZE} px")
    count = as_count(count) or (512 if split == "train" else 64)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"option seed = {seed!r}: expected an integer")
    transform, random = make_transform(
        split,
        augment=bool(augment),
        scale=(max(hw), min(hw)),
        crop_size=crop_size if crop_size is not None else hw,
        ratio_range=ratio_range,
        cat_max_ratio=cat_max_ratio,
    )
    return SyntheticDataset(
        size=hw,
        count=count,
        seed=int(seed),
        split=split,
        transform=transform,
        random=random,
        augment_seed=augment_seed,
    )
