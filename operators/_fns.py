"""ReSFU's fine-grained neighbour selection (FNS) aggregation in pure PyTorch.

For an integer ratio ``s``, HR pixel ``p`` (per axis) has the continuous LR centre
``c(p) = (p + 0.5) / s - 0.5`` (``align_corners=False``). Its ``k x k`` neighbours are
``c(p) + (dy, dx)`` with ``dy, dx in {-k//2, ..., k//2}`` LR pixels; each coordinate is clamped to
the LR border, the raw LR feature is sampled bilinearly there, and the samples are weighted by the
attention ``attn`` (``B, k*k, H, W``), exactly as the official ``FNS_Attn`` CUDA kernel does.

Clamped bilinear sampling equals bilinear sampling on a replicate-padded map, and the fractional
part of ``c(p)`` depends only on the phase ``p mod s``. So the ``k x k`` bilinear taps of every HR
pixel fold into a ``(k+2) x (k+2)`` kernel on the integer LR window centred on ``floor(p / s)``,
and the aggregation becomes CARAFE-style reassembly (``_reassembly.reassemble``) with replicate
padding. Nothing of size ``(B, C, k*k, H, W)`` is materialised; all ops are differentiable
PyTorch ops, so gradients are exact (the official CUDA backward drops value gradients at the
bottom/right LR border, docs/resfu_official.md B3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from upbench.errors import InputShapeError

from ._reassembly import DEFAULT_CHUNK_ELEMENTS, reassemble


def _check(x: Tensor, attn: Tensor, kernel_size: int, scale: int) -> None:
    """Raise :class:`InputShapeError` unless ``x``/``attn`` fit ``kernel_size`` and ``scale``."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise InputShapeError(f"fns: scale must be a positive integer, got {scale!r}")
    k = kernel_size
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise InputShapeError(f"fns: kernel_size must be a positive odd integer, got {kernel_size!r}")
    if x.dim() != 4 or attn.dim() != 4:
        raise InputShapeError(f"fns: x and attn must be 4-D, got {tuple(x.shape)} and {tuple(attn.shape)}")
    b, _, h, w = x.shape
    expected = (b, kernel_size * kernel_size, scale * h, scale * w)
    if tuple(attn.shape) != expected:
        raise InputShapeError(
            f"fns: attn must be {expected} for x {tuple(x.shape)} at scale {scale}, got {tuple(attn.shape)}"
        )


def fns_tap_weights(
    scale: int,
    kernel_size: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Bilinear weights of the ``k`` taps on the ``k + 2`` integer offsets, per phase (one axis).

    Returns ``Tensor[s, k+2, k]``: entry ``[a, o, d]`` is the weight that tap ``d`` (LR offset
    ``d - k//2``) of an HR pixel with phase ``a = p mod s`` puts on the LR pixel
    ``floor(p / s) + o - (k//2 + 1)``.
    """
    phase = torch.arange(scale, dtype=torch.float64, device=device)  # on device: no copy (CUDA graphs)
    frac = (phase + 0.5) / scale - 0.5  # in (-0.5, 0.5): sub-pixel offset of the LR centre
    base = torch.floor(frac)  # -1 or 0
    t = frac - base  # bilinear weight of the upper neighbour, in [0, 1)
    weights = torch.zeros(scale, kernel_size + 2, kernel_size, dtype=torch.float64, device=device)
    rows = torch.arange(scale, device=device)
    for d in range(kernel_size):
        # LR offset (d - k//2) + base sits at index d + base + 1 of the k+2 window.
        lower = (base + d).long() + 1
        weights[rows, lower, d] += 1 - t
        weights[rows, lower + 1, d] += t
    return weights.to(dtype=dtype, device=device)


def fns_kernels(attn: Tensor, kernel_size: int, scale: int) -> Tensor:
    """Fold ``attn`` (``B, k*k, H, W``) into ``(k+2) x (k+2)`` integer-window kernels.

    Returns ``Tensor[B, (k+2)**2, H, W]`` in ``attn``'s dtype promoted to at least float32,
    computed with autocast disabled. Channel ``oy * (k+2) + ox`` weighs the LR pixel
    ``floor(p / s) + (oy, ox) - (k//2 + 1)`` of the replicate-padded map.
    """
    b, _, height, width = attn.shape
    k, s = kernel_size, scale
    work = torch.promote_types(attn.dtype, torch.float32)
    with torch.autocast(device_type=attn.device.type, enabled=False):
        taps = fns_tap_weights(s, k, dtype=work, device=attn.device)  # (s, k+2, k)
        a = attn.to(work).reshape(b, k, k, height // s, s, width // s, s)
        folded = torch.einsum("apd,bdeiajc,cqe->bpqiajc", taps, a, taps)
    return folded.reshape(b, (k + 2) ** 2, height, width)


def fns_aggregate(
    x: Tensor, attn: Tensor, kernel_size: int, scale: int, *, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> Tensor:
    """FNS aggregation without materialising the ``k*k`` taps at HR (the default path).

    Args:
        x: raw LR feature ``Tensor[B, C, h, w]``.
        attn: weights ``Tensor[B, k*k, s*h, s*w]``; channel ``dy*k + dx`` weighs the sample at LR
            offset ``(dy - k//2, dx - k//2)`` from the HR pixel's half-pixel LR centre.
        kernel_size: odd neighbourhood size ``k``.
        scale: integer ratio ``s``.
        chunk_elements: passed to :func:`reassemble` (bounds its temporary memory).

    Returns:
        ``Tensor[B, C, s*h, s*w]`` in the dtype of ``x``.
    """
    _check(x, attn, kernel_size, scale)
    kernels = fns_kernels(attn, kernel_size, scale)
    window = kernel_size + 2
    return reassemble(x, kernels, window, scale, padding_mode="replicate", chunk_elements=chunk_elements)


def fns_aggregate_naive(x: Tensor, attn: Tensor, kernel_size: int, scale: int) -> Tensor:
    """The straightforward FNS: one ``grid_sample`` of all ``k*k`` taps, then a weighted sum.

    Materialises ``(B, C, k*k, H, W)`` (twice); kept as the time/memory baseline for benchmarks
    and as a second implementation in tests. Computes in at least float32.
    """
    _check(x, attn, kernel_size, scale)
    b, c, h, w = x.shape
    k, r = kernel_size, kernel_size // 2
    height, width = attn.shape[-2:]
    work = torch.promote_types(x.dtype, torch.float32)
    offsets = torch.arange(-r, r + 1, device=x.device, dtype=work)

    def normalised(size: int, lr_size: int) -> Tensor:  # (k, size) grid coordinates in [-1, 1]
        centre = (torch.arange(size, device=x.device, dtype=work) + 0.5) / scale - 0.5
        coord = (centre[None, :] + offsets[:, None]).clamp(0, lr_size - 1)
        return (2 * coord + 1) / lr_size - 1

    gy, gx = normalised(height, h), normalised(width, w)
    grid_x = gx[None, :, None, :].expand(k, k, height, width)  # tap (dy, dx) -> x coordinate
    grid_y = gy[:, None, :, None].expand(k, k, height, width)
    grid = torch.stack((grid_x, grid_y), dim=-1)
    grid = grid.reshape(1, k * k * height, width, 2).expand(b, -1, -1, -1)
    samples = F.grid_sample(x.to(work), grid, mode="bilinear", padding_mode="border", align_corners=False)
    samples = samples.view(b, c, k * k, height, width)
    return (samples * attn.to(work).unsqueeze(1)).sum(dim=2).to(x.dtype)
