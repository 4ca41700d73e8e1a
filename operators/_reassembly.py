"""Content-aware reassembly on the integer LR window: the kernel shared by the zoo.

``reassemble`` computes, for every HR pixel ``p = (s*I + a, s*J + b)`` (``0 <= a, b < s``),

    out[c, p] = sum_{n in k x k} K[g(c)*k*k + n, p] * x_pad[c, (I, J) + n - k//2]

i.e. a per-HR-pixel ``k x k`` kernel applied to the LR window centred on ``floor(p / s)``. This is
CARAFE's reassembly (and FADE's and SAPA's aggregation). ReSFU's fine-grained neighbour
selection reduces to it too: bilinear samples at sub-pixel positions fold into a ``(k+2) x (k+2)``
integer window on a replicate-padded map (see ``operators/_fns.py``).

Memory: the naive pure-PyTorch form (unfold, nearest-upsample to HR, multiply, sum, as in the
FADE PR #4 port) materialises a ``(B, C, k*k, H, W)`` tensor. Here every HR pixel of an
``s x s`` cell shares its LR window, so the operation is one batched matmul per LR position,
``(C x k*k) @ (k*k x s*s)``, on a view of the padded LR map: the largest temporary is
``(B, C, k*k, h, w)``, ``s*s`` times smaller, and it is processed in row chunks when large.
All ops are standard differentiable PyTorch ops, so autograd gives exact gradients and fvcore
counts the matmul (``C*k*k`` MACs per HR pixel).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from upbench.errors import InputShapeError

PaddingMode = Literal["zeros", "replicate", "reflect"]

#: Largest number of elements of the gathered LR windows processed at once (per chunk of rows).
DEFAULT_CHUNK_ELEMENTS = 1 << 26


def softmax_float32(logits: Tensor, dim: int) -> Tensor:
    """Softmax over ``dim`` computed in at least float32 (autocast/fp16-safe kernel normalisation)."""
    return F.softmax(logits, dim=dim, dtype=torch.promote_types(logits.dtype, torch.float32))


def _check(x: Tensor, kernels: Tensor, kernel_size: int, scale: int, groups: int) -> None:
    if x.dim() != 4 or kernels.dim() != 4:
        raise InputShapeError(f"reassemble: x and kernels must be 4-D, got {tuple(x.shape)} and {tuple(kernels.shape)}")
    b, c, h, w = x.shape
    k2 = kernel_size * kernel_size
    expected = (b, groups * k2, scale * h, scale * w)
    if tuple(kernels.shape) != expected:
        raise InputShapeError(
            f"reassemble: kernels must be {expected} for x {tuple(x.shape)}, got {tuple(kernels.shape)}"
        )
    if c % groups:
        raise InputShapeError(f"reassemble: channels {c} are not divisible by groups {groups}")


def _pad(x: Tensor, pad: int, padding_mode: PaddingMode) -> Tensor:
    if pad == 0:
        return x
    if padding_mode == "zeros":
        return F.pad(x, (pad, pad, pad, pad))
    if padding_mode in ("replicate", "reflect"):
        return F.pad(x, (pad, pad, pad, pad), mode=padding_mode)
    raise InputShapeError(f"reassemble: padding_mode must be 'zeros', 'replicate' or 'reflect', got {padding_mode!r}")


def _reassemble_rows(xp: Tensor, kernels: Tensor, kernel_size: int, scale: int, groups: int) -> Tensor:
    """Reassembly for a slab of LR rows; ``xp`` is padded, ``kernels`` covers the matching HR rows."""
    b, c, hp, wp = xp.shape
    k, s, g = kernel_size, scale, groups
    h, w = hp - k + 1, wp - k + 1
    cg = c // g
    # (B, G, Cg, h, w, k, k) view of the windows -> one copy in (B, h, w, G, Cg, k*k) layout.
    windows = xp.unfold(2, k, 1).unfold(3, k, 1).unflatten(1, (g, cg))  # a view, no copy yet
    windows = windows.permute(0, 3, 4, 1, 2, 5, 6).reshape(b * h * w * g, cg, k * k)
    kern = kernels.reshape(b, g, k * k, h, s, w, s).permute(0, 3, 5, 1, 2, 4, 6).reshape(b * h * w * g, k * k, s * s)
    out = torch.bmm(windows, kern)  # (B*h*w*G, Cg, s*s)
    return out.reshape(b, h, w, g, cg, s, s).permute(0, 3, 4, 1, 5, 2, 6).reshape(b, c, h * s, w * s)


def reassemble(
    x: Tensor,
    kernels: Tensor,
    kernel_size: int,
    scale: int,
    *,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Tensor:
    """Apply per-HR-pixel kernels to the LR window at ``floor(p / scale)``.

    Args:
        x: LR feature ``Tensor[B, C, h, w]``.
        kernels: ``Tensor[B, groups*k*k, s*h, s*w]``; channel ``g*k*k + (dy*k + dx)`` weighs the
            LR pixel ``(I + dy - k//2, J + dx - k//2)`` for channel group ``g``. Not normalised here.
        kernel_size: odd window size ``k``.
        scale: integer ratio ``s``.
        groups: channel groups sharing one kernel each (CARAFE's ``up_group``).
        padding_mode: ``"zeros"`` (out-of-image taps read 0, as mmcv CARAFE and SAPA),
            ``"replicate"`` (border value, as clamped coordinates in ReSFU's FNS) or ``"reflect"``
            (mirrored without repeating the border, as FeatUp's JBU).
        chunk_elements: process LR rows in chunks so that the gathered windows stay below this
            many elements (bounds the temporary memory of large inputs).

    Returns:
        ``Tensor[B, C, s*h, s*w]`` in the dtype of ``x`` (kernels are cast to it).
    """
    if kernel_size % 2 != 1:
        raise InputShapeError(f"reassemble: kernel_size must be odd, got {kernel_size}")
    _check(x, kernels, kernel_size, scale, groups)
    kernels = kernels.to(x.dtype)
    b, c, h, w = x.shape
    pad = kernel_size // 2
    xp = _pad(x, pad, padding_mode)
    rows_per_chunk = max(1, chunk_elements // max(1, b * c * kernel_size * kernel_size * w))
    if rows_per_chunk >= h:
        return _reassemble_rows(xp, kernels, kernel_size, scale, groups)
    parts = []
    for i0 in range(0, h, rows_per_chunk):
        i1 = min(h, i0 + rows_per_chunk)
        parts.append(
            _reassemble_rows(
                xp[:, :, i0 : i1 + 2 * pad], kernels[:, :, i0 * scale : i1 * scale], kernel_size, scale, groups
            )
        )
    return torch.cat(parts, dim=2)


def reassemble_naive(
    x: Tensor,
    kernels: Tensor,
    kernel_size: int,
    scale: int,
    *,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
) -> Tensor:
    """The common unfold-based formulation: materialises ``(B, C, k*k, H, W)``.

    Kept only as the memory/time baseline for benchmarks and as a second reference in tests.
    """
    _check(x, kernels, kernel_size, scale, groups)
    b, c, h, w = x.shape
    k2 = kernel_size * kernel_size
    xp = _pad(x, kernel_size // 2, padding_mode)
    cols = F.unfold(xp, kernel_size).view(b, c * k2, h, w)
    cols = F.interpolate(cols, scale_factor=scale, mode="nearest").view(
        b, groups, c // groups, k2, h * scale, w * scale
    )
    kern = kernels.to(x.dtype).view(b, groups, 1, k2, h * scale, w * scale)
    return (cols * kern).sum(dim=3).view(b, c, h * scale, w * scale)
