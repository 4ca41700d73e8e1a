"""Similarity between every HR query and the keys of its integer LR window (SAPA's ``qk`` step).

``window_similarity`` computes, for every HR pixel ``p = (s*I + a, s*J + b)`` (``0 <= a, b < s``),

    scores[dy*k + dx, p] = sum_e query[e, p] * key_pad[e, (I, J) + (dy, dx) - k//2]

where ``key_pad`` is the LR key map padded with zeros, so an out-of-image tap scores exactly 0
(as the official SAPA CUDA kernels, which skip those taps and leave the score at 0). The channel
order ``dy*k + dx`` is the one :func:`operators._reassembly.reassemble` expects for its kernels.

Memory: the naive form unfolds the keys and repeats them to HR, a ``(B, E, k*k, H, W)`` tensor.
Here the ``s x s`` HR pixels of one LR cell share their window, so the scores are one batched
matmul per LR position, ``(k*k x E) @ (E x s*s)``: the largest temporary is the gathered windows
``(B, E, k*k, h, w)``, ``s*s`` times smaller, processed in chunks of LR rows when large. Plain
differentiable ops only, so autograd gives exact gradients and fvcore counts the matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from upbench_operators._reassembly import PaddingMode
from upbench_operators._reassembly import _pad as pad_border

#: Largest number of elements of the gathered key windows processed at once (per chunk of rows).
DEFAULT_CHUNK_ELEMENTS = 1 << 26


def _check(query: Tensor, key: Tensor, kernel_size: int, scale: int) -> None:
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"window_similarity: kernel_size must be a positive odd integer, got {kernel_size}")
    if query.dim() != 4 or key.dim() != 4:
        raise ValueError(
            f"window_similarity: query and key must be 4-D, got {tuple(query.shape)} and {tuple(key.shape)}"
        )
    b, e, h, w = key.shape
    expected = (b, e, scale * h, scale * w)
    if tuple(query.shape) != expected:
        raise ValueError(
            f"window_similarity: query must be {expected} for key {tuple(key.shape)} at scale {scale}, "
            f"got {tuple(query.shape)}"
        )


def _similarity_rows(key_pad: Tensor, query: Tensor, kernel_size: int, scale: int) -> Tensor:
    """Scores for a slab of LR rows; ``key_pad`` is zero-padded, ``query`` covers the matching HR rows."""
    b, e, hp, wp = key_pad.shape
    k, s = kernel_size, scale
    h, w = hp - k + 1, wp - k + 1
    windows = key_pad.unfold(2, k, 1).unfold(3, k, 1)  # (B, E, h, w, k, k), a view
    windows = windows.permute(0, 2, 3, 4, 5, 1).reshape(b * h * w, k * k, e)
    q = query.reshape(b, e, h, s, w, s).permute(0, 2, 4, 1, 3, 5).reshape(b * h * w, e, s * s)
    scores = torch.bmm(windows, q)  # (B*h*w, k*k, s*s)
    return scores.reshape(b, h, w, k * k, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, k * k, h * s, w * s)


def window_similarity(
    query: Tensor,
    key: Tensor,
    kernel_size: int,
    scale: int,
    *,
    padding_mode: PaddingMode = "zeros",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Tensor:
    """Dot products between each HR query and the ``k x k`` LR keys around ``floor(p / scale)``.

    Args:
        query: HR queries ``Tensor[B, E, s*h, s*w]``.
        key: LR keys ``Tensor[B, E, h, w]``.
        kernel_size: odd window size ``k``.
        scale: integer ratio ``s``.
        padding_mode: ``"zeros"`` (taps outside the image score 0, as SAPA) or another mode of
            :func:`operators._reassembly.reassemble` (``"reflect"``: FeatUp's JBU at ``scale=1``).
        chunk_elements: process LR rows in chunks so that the gathered windows stay below this
            many elements (bounds the temporary memory of large inputs).

    Returns:
        ``Tensor[B, k*k, s*h, s*w]``; channel ``dy*k + dx`` scores the LR pixel
        ``(I + dy - k//2, J + dx - k//2)``, and taps outside the image score 0.
    """
    _check(query, key, kernel_size, scale)
    query = query.to(key.dtype) if query.dtype != key.dtype else query
    b, e, h, w = key.shape
    pad = kernel_size // 2
    key_pad = pad_border(key, pad, padding_mode)
    rows_per_chunk = max(1, chunk_elements // max(1, b * e * kernel_size * kernel_size * w))
    if rows_per_chunk >= h:
        return _similarity_rows(key_pad, query, kernel_size, scale)
    parts = []
    for i0 in range(0, h, rows_per_chunk):
        i1 = min(h, i0 + rows_per_chunk)
        parts.append(
            _similarity_rows(key_pad[:, :, i0 : i1 + 2 * pad], query[:, :, i0 * scale : i1 * scale], kernel_size, scale)
        )
    return torch.cat(parts, dim=2)


def window_similarity_naive(query: Tensor, key: Tensor, kernel_size: int, scale: int) -> Tensor:
    """The common unfold formulation: materialises the ``(B, E, k*k, H, W)`` repeated key windows.

    Kept only as the memory/time baseline for benchmarks and as a second reference in tests.
    """
    _check(query, key, kernel_size, scale)
    query = query.to(key.dtype) if query.dtype != key.dtype else query
    b, e, h, w = key.shape
    k2 = kernel_size * kernel_size
    cols = F.unfold(key, kernel_size, padding=kernel_size // 2).view(b, e * k2, h, w)
    cols = F.interpolate(cols, scale_factor=scale, mode="nearest").view(b, e, k2, h * scale, w * scale)
    return (cols * query.unsqueeze(2)).sum(dim=1)
