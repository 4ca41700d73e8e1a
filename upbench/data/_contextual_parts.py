"""The parts of the ``contextual`` generator (:mod:`upbench.data.contextual`): its classes and
constants, the sampling helpers, the appearance of a region (colours that keep the contrast
rule, textures) and the shapes of things and strokes. The scene, the dataset and its
registration are in :mod:`upbench.data.contextual`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F

CLASS_NAMES = ("field", "stripes", "dots", "triangle", "quad", "ellipse", "wire", "speck")
FIELD, STRIPES, DOTS, TRIANGLE, QUAD, ELLIPSE, WIRE, SPECK = range(8)
STUFF = (FIELD, STRIPES, DOTS)
THINGS = (TRIANGLE, QUAD, ELLIPSE)
SPLIT_IDS = {"train": 0, "val": 1, "pretrain": 2}
MIN_SIZE, MAX_SIZE = 32, 1024
#: Minimum RGB distance (colours in [0, 1]) between the colours of touching regions.
CONTRAST = 0.25
#: Supersampling factor of the image (labels are read at pixel centres).
SUPERSAMPLE = 2
#: Generated samples kept per process (about 0.25 MB each at 128 px).
CACHE_SIZE = 4096
NOISE_SIGMA, BLUR_SIGMA = 0.02, 0.5
#: Circumradius range of things at 128 px (scaled with the image side).
THING_RADIUS = (12.0, 24.0)
#: Things per 128 x 128 px (scaled with the area).
THING_COUNT = (3, 6)


# --------------------------------------------------------------------------- drawing helpers
class _Draw:
    """The generator of one sample and the two grids it is drawn on."""

    def __init__(self, height: int, width: int, generator: torch.Generator) -> None:
        self.h, self.w, self.g = height, width, generator
        self.side = min(height, width)
        self.scale = self.side / 128
        self.area = height * width / 128**2

    def rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.g)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.g))

    def randint(self, low: int, high: int) -> int:
        """An integer in ``[low, high]`` (both included)."""
        return int(torch.randint(low, high + 1, (), generator=self.g))

    def count(self, low: int, high: int, per: float) -> int:
        """A count in ``[low, high]`` scaled by ``per`` (the area or side factor), at least 1."""
        return max(1, round(self.randint(low, high) * per))


@dataclass
class _Grid:
    """Coordinates (in pixels of the output image; pixel ``(i, j)`` has its centre at ``(i, j)``)."""

    yy: Tensor
    xx: Tensor

    @staticmethod
    def make(h: int, w: int, factor: int) -> _Grid:
        offsets = (torch.arange(factor, dtype=torch.float32) + 0.5) / factor - 0.5
        ys = (torch.arange(h, dtype=torch.float32)[:, None] + offsets[None]).reshape(-1)
        xs = (torch.arange(w, dtype=torch.float32)[:, None] + offsets[None]).reshape(-1)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return _Grid(yy, xx)

    def window(self, y0: float, x0: float, y1: float, x1: float) -> tuple[slice, slice]:
        """Rows and columns of this grid whose coordinates fall in ``[y0, y1] x [x0, x1]``."""
        ys, xs = self.yy[:, 0], self.xx[0]
        r0, r1 = int(torch.searchsorted(ys, y0)), int(torch.searchsorted(ys, y1, right=True))
        c0, c1 = int(torch.searchsorted(xs, x0)), int(torch.searchsorted(xs, x1, right=True))
        return slice(r0, r1), slice(c0, c1)


def _smooth_noise(d: _Draw, cell: float, height: float, width: float) -> Tensor:
    """Control points of value noise with a cell of ``cell`` px over a ``height x width`` area."""
    return d.rand(1, 1, max(2, math.ceil(height / cell) + 2), max(2, math.ceil(width / cell) + 2))


def _sample_noise(control: Tensor, y: Tensor, x: Tensor, y0: float, x0: float, cell: float) -> Tensor:
    """Bicubic interpolation of ``control`` (cell ``cell`` px, origin ``(y0, x0)`` one cell before
    the area) at coordinates ``(y, x)``."""
    gh, gw = control.shape[-2:]
    gy = ((y - y0) / cell + 1) / (gh - 1) * 2 - 1
    gx = ((x - x0) / cell + 1) / (gw - 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)[None]
    return F.grid_sample(control, grid, mode="bicubic", align_corners=True, padding_mode="border")[0, 0]


# --------------------------------------------------------------------------- appearance
@dataclass
class _Texture:
    """A fill: ``kind`` (``FIELD``/``STRIPES``/``DOTS`` or ``None`` for flat), its colours and parameters."""

    kind: int | None
    colours: Tensor  # [2, 3] in [0, 1] (flat: one row used)
    params: dict = field(default_factory=dict)

    def palette(self) -> Tensor:
        """Colours this fill can show (the field's blend as points along the segment)."""
        if self.kind is None:
            return self.colours[:1]
        if self.kind == FIELD:
            t = torch.linspace(0, 1, 5)[:, None]
            return self.colours[0] * (1 - t) + self.colours[1] * t
        return self.colours

    def paint(self, y: Tensor, x: Tensor) -> Tensor:
        """RGB ``[3, *y.shape]`` of the fill at coordinates ``(y, x)``."""
        c0, c1 = self.colours[0][:, None, None], self.colours[1][:, None, None]
        p = self.params
        if self.kind is None:
            return c0.expand(3, *y.shape)
        if self.kind == FIELD:
            t = _sample_noise(p["control"], y, x, p["y0"], p["x0"], p["cell"])
            t = (0.5 + 1.6 * (t - 0.5)).clamp(0, 1)
            return c0 * (1 - t) + c1 * t
        if self.kind == STRIPES:
            u = x * math.cos(p["angle"]) + y * math.sin(p["angle"])
            on = torch.frac(u / p["period"] + p["phase"]).lt(p["duty"])
            return torch.where(on, c0, c1)
        # DOTS: a rotated lattice, each cell's disc jittered by a per-cell offset
        cos, sin, s = math.cos(p["angle"]), math.sin(p["angle"]), p["spacing"]
        u = (x * cos + y * sin) / s + p["offset"][0]
        v = (-x * sin + y * cos) / s + p["offset"][1]
        iu, iv = torch.floor(u), torch.floor(v)
        jit = p["jitter"]
        n = jit.shape[0]
        ju = jit[(iv.long() % n), (iu.long() % n), 0]
        jv = jit[(iv.long() % n), (iu.long() % n), 1]
        du, dv = (u - iu - 0.5 - ju) * s, (v - iv - 0.5 - jv) * s
        on = (du.square() + dv.square()).lt(p["radius"] ** 2)
        return torch.where(on, c0, c1)


def _distance_ok(candidate: Tensor, avoid: Tensor) -> bool:
    return avoid.numel() == 0 or bool(torch.cdist(candidate, avoid).min() >= CONTRAST)


def _pick_colours(d: _Draw, kind: int | None, avoid: Tensor, tries: int = 200) -> Tensor:
    """Colours ``[2, 3]`` for a fill of ``kind``: the two at least ``CONTRAST`` apart (textures), and
    every colour the fill shows at least ``CONTRAST`` from ``avoid`` (``[N, 3]``). After ``tries``
    draws the best one (largest smallest distance) is kept."""
    best, best_gap = None, -1.0
    for _ in range(tries):
        colours = d.rand(2, 3)
        if kind is not None and float((colours[0] - colours[1]).norm()) < CONTRAST:
            continue
        shown = _Texture(kind, colours).palette()
        if _distance_ok(shown, avoid):
            return colours
        gap = float(torch.cdist(shown, avoid).min())
        if gap > best_gap:
            best, best_gap = colours, gap
    return best if best is not None else d.rand(2, 3)


def _texture(d: _Draw, kind: int | None, avoid: Tensor, y0: float, x0: float, height: float, width: float) -> _Texture:
    """A fill of texture ``kind`` covering the area ``[y0, y0 + height] x [x0, x0 + width]``."""
    colours = _pick_colours(d, kind, avoid)
    if kind is None:
        return _Texture(None, colours)
    if kind == FIELD:
        cell = d.uniform(16, 32)
        params = {"control": _smooth_noise(d, cell, height, width), "cell": cell, "y0": y0, "x0": x0}
    elif kind == STRIPES:
        params = {
            "angle": d.uniform(0, math.pi),
            "period": d.uniform(10, 18),
            "duty": d.uniform(0.3, 0.7),
            "phase": d.uniform(0, 1),
        }
    else:
        spacing = d.uniform(10, 16)
        radius = d.uniform(1.5, 3.5)
        slack = max(0.0, (spacing / 2 - radius - 1) / spacing)
        n = math.ceil(2 * math.hypot(d.h, d.w) / spacing) + 4
        params = {
            "angle": d.uniform(0, math.pi),
            "spacing": spacing,
            "radius": radius,
            "offset": (d.uniform(0, 1), d.uniform(0, 1)),
            "jitter": (d.rand(n, n, 2) * 2 - 1) * slack,
        }
    return _Texture(kind, colours, params)


# --------------------------------------------------------------------------- shapes
@dataclass
class _Shape:
    """A region's geometry: ``inside(y, x)`` and the bounding box it fits in."""

    kind: str
    params: dict
    box: tuple[float, float, float, float]  # y0, x0, y1, x1

    def inside(self, y: Tensor, x: Tensor) -> Tensor:
        p = self.params
        if self.kind == "polygon":  # convex, vertices counter-clockwise in (x, y)
            ok = torch.ones_like(y, dtype=torch.bool)
            vs = p["vertices"]
            for (ax, ay), (bx, by) in zip(vs, vs[1:] + vs[:1]):
                ok &= (bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0
            return ok
        if self.kind == "ellipse":
            cy, cx, a, b, ang = p["cy"], p["cx"], p["a"], p["b"], p["angle"]
            u = (x - cx) * math.cos(ang) + (y - cy) * math.sin(ang)
            v = (y - cy) * math.cos(ang) - (x - cx) * math.sin(ang)
            return (u / a).square() + (v / b).square() <= 1
        if self.kind == "segment":
            (y0, x0), (y1, x1), half = p["a"], p["b"], p["half"]
            dy, dx = y1 - y0, x1 - x0
            t = (((y - y0) * dy + (x - x0) * dx) / max(dy * dy + dx * dx, 1e-9)).clamp(0, 1)
            return ((y - y0 - t * dy).square() + (x - x0 - t * dx).square()) < half * half
        if self.kind == "arc":
            cy, cx, r, half, start, span = p["cy"], p["cx"], p["r"], p["half"], p["start"], p["span"]
            dist = ((y - cy).square() + (x - cx).square()).sqrt()
            ang = torch.remainder(torch.atan2(y - cy, x - cx) - start, 2 * math.pi)
            return (dist - r).abs().lt(half) & ang.le(span)
        raise AssertionError(self.kind)

    def mask(self, grid: _Grid) -> tuple[tuple[slice, slice], Tensor]:
        """The window of ``grid`` around the shape and the mask inside it."""
        rows, cols = grid.window(*self.box)
        return (rows, cols), self.inside(grid.yy[rows, cols], grid.xx[rows, cols])


def _polygon(vertices: list[tuple[float, float]]) -> _Shape:
    xs, ys = [v[0] for v in vertices], [v[1] for v in vertices]
    return _Shape("polygon", {"vertices": vertices}, (min(ys) - 1, min(xs) - 1, max(ys) + 1, max(xs) + 1))


def _thing_shape(d: _Draw, cls: int, cy: float, cx: float) -> _Shape:
    """A triangle, quadrilateral or ellipse of circumradius 12-24 px (times the image scale)."""
    radius = d.uniform(*THING_RADIUS) * d.scale
    rot = d.uniform(0, 2 * math.pi)
    if cls == TRIANGLE:
        angles = [rot + k * 2 * math.pi / 3 + d.uniform(-0.25, 0.25) for k in range(3)]
        rs = [radius * d.uniform(0.85, 1.0) for _ in range(3)]
        return _polygon([(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(rs, angles)])
    if cls == QUAD:
        aspect, shear = d.uniform(0.5, 1.0), d.uniform(-0.3, 0.3)
        a = radius / math.sqrt(1 + aspect * aspect)
        b = a * aspect
        corners = [(-a, -b), (a, -b), (a, b), (-a, b)]
        out = []
        for u, v in corners:
            u = u + shear * v
            out.append((cx + u * math.cos(rot) - v * math.sin(rot), cy + u * math.sin(rot) + v * math.cos(rot)))
        return _polygon(out)
    a = radius * d.uniform(0.7, 0.9)
    b = a * d.uniform(0.5, 1.0)
    return _Shape(
        "ellipse", {"cy": cy, "cx": cx, "a": a, "b": b, "angle": rot}, (cy - a - 1, cx - a - 1, cy + a + 1, cx + a + 1)
    )


def _stroke(d: _Draw, length: float, half: float, arc: bool) -> _Shape:
    """A straight stroke (or an arc of radius >= 60 px) of ``length`` px centred in the image area."""
    cy, cx = d.uniform(0, d.h - 1), d.uniform(0, d.w - 1)
    theta = d.uniform(0, 2 * math.pi)
    if arc:
        r = d.uniform(60, 140) * max(1.0, d.scale)
        span = length / r
        start = theta
        oy, ox = cy - r * math.sin(start + span / 2), cx - r * math.cos(start + span / 2)
        m = r + half + 1
        return _Shape(
            "arc",
            {"cy": oy, "cx": ox, "r": r, "half": half, "start": start, "span": span},
            _clip_box(oy - m, ox - m, oy + m, ox + m, cy, cx, length / 2 + half + 1),
        )
    dy, dx = math.sin(theta) * length / 2, math.cos(theta) * length / 2
    a, b = (cy - dy, cx - dx), (cy + dy, cx + dx)
    m = half + 1
    box = (min(a[0], b[0]) - m, min(a[1], b[1]) - m, max(a[0], b[0]) + m, max(a[1], b[1]) + m)
    return _Shape("segment", {"a": a, "b": b, "half": half}, box)


def _clip_box(y0: float, x0: float, y1: float, x1: float, cy: float, cx: float, reach: float) -> tuple:
    """``(y0, x0, y1, x1)`` intersected with the square of half-side ``reach`` around ``(cy, cx)``."""
    return (max(y0, cy - reach), max(x0, cx - reach), min(y1, cy + reach), min(x1, cx + reach))
