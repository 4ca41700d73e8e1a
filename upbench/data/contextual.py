"""``contextual``: procedural scenes in which a pixel's class needs context, not its colour.

The built-in default dataset (no files, no download). Every colour is drawn at random per
instance from one distribution that all classes share, so neither a pixel's colour nor its
immediate surroundings give the class away; the class is decided by what only a wider window
shows, and every boundary stays visible in the image. Eight classes:

========  =========================================================  ===================================
class     what decides it (needs context)                            local twin (labelled otherwise)
========  =========================================================  ===================================
field     stuff: smooth value noise blending two colours (16-32 px)  things filled with the same noise
stripes   stuff: grating of period 10-18 px, any angle, duty 0.3-0.7 stripe-filled things; decoy strokes
dots      stuff: jittered lattice of discs 3-7 px, spacing 10-16 px  specks; dot-filled things
triangle  thing: a triangle (circumradius 12-24 px)                  stuff of the same texture
quad      thing: a quadrilateral (aspect 0.5-1, sheared)             stuff of the same texture
ellipse   thing: an ellipse (aspect 0.5-1)                           stuff of the same texture
wire      a stroke 2-3 px wide and 48-128 px long                    decoy strokes 8-14 px long
speck     an isolated disc 3-7 px wide, far from any dots texture    the discs of the dots texture
========  =========================================================  ===================================

Things are filled with the stuff textures (with fresh parameters and colours), so their
interior looks, locally, exactly like stuff: only the outline, seen at a coarser scale, gives
their class. Decoy strokes (same widths and colours as wires) are scattered everywhere and keep
the label of what they lie on.

Appearance: every region (stuff region, thing, stroke, speck) draws its colours uniformly in
RGB; a region's colours are resampled until each lies at least ``CONTRAST`` (0.25 in [0, 1] RGB)
from every colour of the regions it touches and from its own other colour, so every boundary
is visible (the field texture counts as the segment between its two colours). All layers are
drawn by the same code at 2x supersampling and box-filtered down, then one global blur
(sigma 0.5 px), a global contrast and brightness jitter and Gaussian noise (sigma 0.02) are
applied: edge profiles carry no class information.

Labels are read at pixel centres from the top-most labelled layer. Sizes of regions and things
(and wire lengths) scale with the image side (``side / 128``) and counts with the area; stroke
widths, decoy lengths, disc and speck sizes and texture periods stay in pixels, the scale of the
receptive fields and patches the models see.

No files and no download: sample ``i`` of a split is drawn from the seed
``mix_seed(seed, split_id, i)`` (``split_id`` 0 for train, 1 for val, 2 for ``pretrain``, the
split the shipped encoders were pretrained on, so it never meets a suite's data) by its own
``torch.Generator``: the same ``(seed, split, i)`` gives the same sample, whatever the order of
access or the DataLoader worker. Samples are cached per process.

``python -m upbench audit contextual`` measures what the data can answer (shortcut ceilings,
low-resolution ceilings, a guided oracle).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from upbench.data._contextual_parts import (
    BLUR_SIGMA,
    CACHE_SIZE,
    CLASS_NAMES,
    CONTRAST,
    DOTS,
    ELLIPSE,
    FIELD,
    MAX_SIZE,
    MIN_SIZE,
    NOISE_SIGMA,
    QUAD,
    SPECK,
    SPLIT_IDS,
    STRIPES,
    STUFF,
    SUPERSAMPLE,
    THING_COUNT,
    THING_RADIUS,
    THINGS,
    TRIANGLE,
    WIRE,
    _Draw,
    _Grid,
    _pick_colours,
    _sample_noise,
    _Shape,
    _smooth_noise,
    _stroke,
    _Texture,
    _texture,
    _thing_shape,
)
from upbench.data.base import SegmentationDataset, mix_seed
from upbench.data.pipelines import as_count, as_pair, make_transform
from upbench.data.registry import register_dataset
from upbench.data.transforms import Compose
from upbench.errors import ConfigError

#: The classes and constants of the generator (defined in :mod:`._contextual_parts`), its
#: functions and its dataset.
__all__ = [
    "BLUR_SIGMA",
    "CACHE_SIZE",
    "CLASS_NAMES",
    "CONTRAST",
    "ContextualDataset",
    "DOTS",
    "ELLIPSE",
    "FIELD",
    "MAX_SIZE",
    "MIN_SIZE",
    "NOISE_SIGMA",
    "QUAD",
    "SPECK",
    "SPLIT_IDS",
    "STRIPES",
    "STUFF",
    "SUPERSAMPLE",
    "THINGS",
    "THING_COUNT",
    "THING_RADIUS",
    "TRIANGLE",
    "WIRE",
    "build_contextual",
    "generate",
]


# --------------------------------------------------------------------------- the scene
@dataclass
class _Layer:
    """One region drawn over the earlier ones: a shape (``None``: the whole image, stuff), its fill,
    and the label it writes (``None``: keeps the label underneath, e.g. a decoy stroke)."""

    shape: _Shape | None
    texture: _Texture
    label: int | None


class _Scene:
    """Layers drawn one after the other; keeps, at pixel centres, the label and which layer shows."""

    def __init__(self, d: _Draw) -> None:
        self.d = d
        self.grid = _Grid.make(d.h, d.w, 1)
        self.label = torch.zeros(d.h, d.w, dtype=torch.long)
        self.owner = torch.zeros(d.h, d.w, dtype=torch.long)  # index of the layer visible at each pixel
        self.layers: list[_Layer] = []
        #: the stuff partition as a function of a grid (region index per point), and its first layer
        self.stuff: tuple[Callable[[_Grid], Tensor], int] | None = None

    def palette_under(self, window: tuple[slice, slice], mask: Tensor) -> Tensor:
        """Colours of every layer visible under ``mask`` or next to it (1 px ring)."""
        grown = F.max_pool2d(mask[None, None].float(), 3, 1, 1)[0, 0].bool()
        owners = torch.unique(self.owner[window][grown]).tolist()
        if not owners:
            return torch.zeros(0, 3)
        return torch.cat([self.layers[k].texture.palette() for k in owners])

    def add(self, layer: _Layer, window: tuple[slice, slice], mask: Tensor) -> None:
        k = len(self.layers)
        self.layers.append(layer)
        self.owner[window] = torch.where(mask, k, self.owner[window])
        if layer.label is not None:
            self.label[window] = torch.where(mask, layer.label, self.label[window])


def _stuff(d: _Draw, scene: _Scene) -> None:
    """A warped Voronoi partition of 3-5 regions, each with one of the stuff textures."""
    n = d.randint(3, 5)
    seeds = d.rand(n, 2) * torch.tensor([d.h, d.w])
    classes = [STUFF[d.randint(0, 2)] for _ in range(n)]
    classes[1] = STUFF[(STUFF.index(classes[0]) + d.randint(1, 2)) % 3]  # at least two stuff classes
    cell = 40 * d.scale
    warp = (_smooth_noise(d, cell, d.h, d.w), _smooth_noise(d, cell, d.h, d.w))
    amplitude = 10 * d.scale

    def regions(grid: _Grid) -> Tensor:
        wy = grid.yy + amplitude * (2 * _sample_noise(warp[0], grid.yy, grid.xx, -cell, -cell, cell) - 1)
        wx = grid.xx + amplitude * (2 * _sample_noise(warp[1], grid.yy, grid.xx, -cell, -cell, cell) - 1)
        nearest, best = torch.full_like(wy, math.inf), torch.zeros(wy.shape, dtype=torch.long)
        for k, (py, px) in enumerate(seeds.tolist()):
            dist = (wy - py).square() + (wx - px).square()
            best = torch.where(dist < nearest, k, best)
            nearest = torch.minimum(dist, nearest)
        return best

    region = regions(scene.grid)
    # which regions touch which: every region's colours avoid those of its neighbours drawn before it
    pairs = set()
    for a, b in ((region[1:], region[:-1]), (region[:, 1:], region[:, :-1])):
        diff = a != b
        pairs |= {tuple(sorted(p)) for p in torch.stack([a[diff], b[diff]], 1).unique(dim=0).tolist()}
    textures: list[_Texture] = []
    for k in range(n):
        near = [textures[j].palette() for j in range(k) if (j, k) in pairs]
        avoid = torch.cat(near) if near else torch.zeros(0, 3)
        textures.append(_texture(d, classes[k], avoid, 0, 0, d.h, d.w))
    scene.stuff = (regions, len(scene.layers))  # the function re-evaluates the partition on any grid
    everything = (slice(None), slice(None))
    for k in range(n):
        scene.add(_Layer(None, textures[k], classes[k]), everything, region == k)


def _things(d: _Draw, scene: _Scene) -> None:
    """3-6 things (per 128 px squared), each a triangle, quad or ellipse filled with a stuff texture,
    placed where they cover at most 20 % of earlier things and show at least 60 px (times the scale)."""
    for _ in range(d.count(*THING_COUNT, d.area)):
        cls = THINGS[d.randint(0, 2)]
        for _attempt in range(10):
            cy, cx = d.uniform(0, d.h - 1), d.uniform(0, d.w - 1)
            shape = _thing_shape(d, cls, cy, cx)
            window, mask = shape.mask(scene.grid)
            area = int(mask.sum())
            under = scene.label[window][mask]
            overlap = int(((under >= TRIANGLE) & (under <= ELLIPSE)).sum())
            if area >= 60 * d.scale**2 and overlap <= 0.2 * area:
                break
        else:
            continue
        y0, x0, y1, x1 = shape.box
        fill = STUFF[d.randint(0, 2)]
        texture = _texture(d, fill, scene.palette_under(window, mask), y0, x0, y1 - y0, x1 - x0)
        scene.add(_Layer(shape, texture, cls), window, mask)


def _strokes(d: _Draw, scene: _Scene, widths: tuple[int, ...]) -> None:
    """Decoy strokes (8-14 px, the label underneath) then wires (48-128 px, their own class)."""
    plan = [(d.uniform(8, 14), None) for _ in range(d.count(3, 8, d.area))]
    plan += [(d.uniform(48, 128) * d.scale, WIRE) for _ in range(d.count(1, 3, d.scale))]
    for length, label in plan:
        half = widths[d.randint(0, len(widths) - 1)] / 2
        shape = _stroke(d, length, half, arc=label == WIRE and d.uniform(0, 1) < 0.4)
        window, mask = shape.mask(scene.grid)
        if not bool(mask.any()):
            continue
        texture = _Texture(None, _pick_colours(d, None, scene.palette_under(window, mask)))
        scene.add(_Layer(shape, texture, label), window, mask)


def _specks(d: _Draw, scene: _Scene) -> None:
    """3-6 isolated discs (diameter 3-7 px, as the dots texture's), 16 px or more from each other and
    with no dots texture within 8 px of their centre."""
    centres: list[tuple[float, float]] = []
    dotted = torch.tensor([layer.texture.kind == DOTS for layer in scene.layers])[scene.owner]
    for _ in range(d.count(3, 6, d.area)):
        for _attempt in range(20):
            cy, cx, radius = d.uniform(2, d.h - 3), d.uniform(2, d.w - 3), d.uniform(1.5, 3.5)
            far = all(math.hypot(cy - y, cx - x) >= 16 for y, x in centres)
            rows = slice(max(0, int(cy) - 8), int(cy) + 9)
            cols = slice(max(0, int(cx) - 8), int(cx) + 9)
            if far and not bool(dotted[rows, cols].any()):
                break
        else:
            continue
        m = radius + 1
        shape = _Shape(
            "ellipse", {"cy": cy, "cx": cx, "a": radius, "b": radius, "angle": 0.0}, (cy - m, cx - m, cy + m, cx + m)
        )
        window, mask = shape.mask(scene.grid)
        if not bool(mask.any()):
            continue
        texture = _Texture(None, _pick_colours(d, None, scene.palette_under(window, mask)))
        scene.add(_Layer(shape, texture, SPECK), window, mask)
        centres.append((cy, cx))


def _render(scene: _Scene, factor: int) -> Tensor:
    """The image ``[3, H, W]`` in [0, 1]: every layer painted on a grid ``factor`` times finer, box-filtered."""
    d = scene.d
    grid = _Grid.make(d.h, d.w, factor)
    image = torch.zeros(3, *grid.yy.shape)
    assert scene.stuff is not None
    regions, first = scene.stuff
    region = regions(grid)
    for k, layer in enumerate(scene.layers):
        if layer.shape is None:
            mask = region == (k - first)
            image = torch.where(mask, layer.texture.paint(grid.yy, grid.xx), image)
            continue
        (rows, cols), mask = layer.shape.mask(grid)
        if mask.any():
            patch = layer.texture.paint(grid.yy[rows, cols], grid.xx[rows, cols])
            image[:, rows, cols] = torch.where(mask, patch, image[:, rows, cols])
    return F.avg_pool2d(image[None], factor)[0] if factor > 1 else image


def _finish(d: _Draw, image: Tensor) -> Tensor:
    """Global blur, contrast/brightness jitter and noise, the same for every pixel and class."""
    x = torch.arange(-1, 2, dtype=torch.float32)
    k = torch.exp(-x.square() / (2 * BLUR_SIGMA**2))
    k = k / k.sum()
    padded = F.pad(image[None], (1, 1, 1, 1), mode="replicate")
    blurred = F.conv2d(padded, (k[:, None] * k[None, :]).expand(3, 1, 3, 3).contiguous(), groups=3)[0]
    contrast, brightness = d.uniform(0.85, 1.15), d.uniform(-0.06, 0.06)
    out = (blurred - 0.5) * contrast + 0.5 + brightness
    return (out + NOISE_SIGMA * torch.randn(image.shape, generator=d.g)).clamp(0, 1)


def generate(height: int, width: int, seed: int, wire_widths: tuple[int, ...] = (2, 3)) -> tuple[Tensor, Tensor]:
    """One sample: image float ``[3, H, W]`` in [0, 255] and label long ``[H, W]`` in ``[0, 8)``.

    Deterministic in its arguments; served from a per-process cache (copies, so that a caller may
    modify what it gets).
    """
    image, label = _generate_cached(height, width, seed, tuple(wire_widths))
    return image.clone(), label.clone()


@functools.lru_cache(maxsize=CACHE_SIZE)
def _generate_cached(height: int, width: int, seed: int, wire_widths: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    d = _Draw(height, width, torch.Generator().manual_seed(seed))
    scene = _Scene(d)
    _stuff(d, scene)
    _things(d, scene)
    _strokes(d, scene, wire_widths)
    _specks(d, scene)
    image = _finish(d, _render(scene, SUPERSAMPLE))
    return (image * 255).contiguous(), scene.label


class ContextualDataset(SegmentationDataset):
    """``count`` generated samples of ``size = (H, W)`` of one split (see the module docstring)."""

    def __init__(
        self,
        *,
        size: tuple[int, int],
        count: int,
        seed: int,
        split: str,
        wire_widths: tuple[int, ...],
        transform: Compose,
        random: bool,
        augment_seed: int | None = None,
    ) -> None:
        super().__init__(transform, random=random, augment_seed=augment_seed)
        self.size, self.count, self.seed, self.split, self.wire_widths = size, count, seed, split, wire_widths

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        return generate(*self.size, mix_seed(self.seed, SPLIT_IDS[self.split], index), self.wire_widths)


@register_dataset(
    "contextual",
    num_classes=len(CLASS_NAMES),
    class_names=CLASS_NAMES,
    needs_root=False,
    splits=tuple(SPLIT_IDS),
    title="procedural scenes whose classes need context: random colours, shapes, textures, wires, specks",
)
def build_contextual(
    split: str,
    root: str | Path | None = None,
    *,
    size: int | tuple[int, int] = 128,
    count: int | None = None,
    seed: int = 0,
    wire_widths: tuple[int, ...] = (2, 3),
    augment: bool = False,
    crop_size: int | tuple[int, int] | None = None,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 1.0,
    augment_seed: int | None = None,
) -> ContextualDataset:
    """The ``contextual`` dataset (the default; see the module docstring).

    ``size``: image side (or ``(H, W)``), 32 to 1024 px (128 is the intended size; region sizes
    scale with it). ``count``: samples in the split (default 512 for train and pretrain, 64 for
    val). ``seed``: base seed of the generation. ``wire_widths``: widths of wires and decoy
    strokes in px, drawn uniformly (default 2 or 3; ``[1, 2, 3]`` is harder). ``augment``: run the
    training pipeline (random resize ``ratio_range``, crop ``crop_size``, flip, photometric
    distortion); off by default since every sample is already new. ``augment_seed``: see
    :mod:`upbench.data.base`.
    """
    hw = tuple(int(v) for v in as_pair(size, "size", minimum=MIN_SIZE))
    if max(hw) > MAX_SIZE or hw != as_pair(size, "size"):
        raise ConfigError(f"option size = {size!r}: expected integers from {MIN_SIZE} to {MAX_SIZE} px")
    count = as_count(count) or (64 if split == "val" else 512)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigError(f"option seed = {seed!r}: expected an integer from 0 to 2**63 - 1")
    widths = tuple(wire_widths) if isinstance(wire_widths, list | tuple) else ()
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 5 for w in widths):
        raise ConfigError(f"option wire_widths = {wire_widths!r}: expected a non-empty list of integers from 1 to 5")
    transform, random = make_transform(
        split if split != "pretrain" else "train",
        augment=bool(augment),
        scale=(max(hw), min(hw)),
        crop_size=crop_size if crop_size is not None else hw,
        ratio_range=ratio_range,
        cat_max_ratio=cat_max_ratio,
    )
    return ContextualDataset(
        size=hw,
        count=count,
        seed=int(seed),
        split=split,
        wire_widths=widths,
        transform=transform,
        random=random,
        augment_seed=augment_seed,
    )
