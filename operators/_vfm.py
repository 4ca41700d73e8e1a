"""Layers shared by the attention-based feature upsamplers of the JAFAR line (JAFAR, AnyUp).

* :class:`RoPE`: the 2-D rotary position embedding both use (``theta=100``, learnable ``freqs``), applied
  to a ``(B, C, H, W)`` map on the ``linspace(0, 1)`` grid of its rows and columns.
* :func:`averaged_attention`: the attention weights of ``nn.MultiheadAttention`` averaged over heads
  (``average_attn_weights=True``) applied to the *raw* values, as both compute it. The official code asks
  the module for the ``(B, N, M)`` weights of all queries at once; here queries are processed in chunks so
  the ``(B, heads, rows, M)`` scores stay below ``chunk_elements``. A boolean ``mask`` (``True`` = blocked,
  ``nn.MultiheadAttention``'s convention) restricts each query to a window.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from upbench.errors import InvalidOptionError

#: Largest number of attention scores (batch x heads x queries x keys) computed at once.
DEFAULT_CHUNK_ELEMENTS = 1 << 25


class RoPE(nn.Module):
    """2-D rotary embedding: channel pairs ``(c, c + dim/2)`` rotated by ``coords @ freqs``.

    ``freqs[0]`` holds the row frequencies of the first half of the channels, ``freqs[1]`` the column
    frequencies of the second half: ``theta ** linspace(0, -1, dim/4)`` twice, times ``2 pi``.
    """

    def __init__(self, dim: int, theta: int = 100) -> None:
        super().__init__()
        self.dim = dim
        self.theta = theta
        freqs_1d = theta ** torch.linspace(0, -1, dim // 4, dtype=torch.float64)
        freqs_1d = torch.cat([freqs_1d, freqs_1d])
        freqs = torch.zeros(2, dim, dtype=torch.float64)
        freqs[0, : dim // 2] = freqs_1d
        freqs[1, -dim // 2 :] = freqs_1d
        self.freqs = nn.Parameter((freqs * 2 * math.pi).to(torch.get_default_dtype()))

    def forward(self, x: Tensor) -> Tensor:
        """Rotate ``x`` ``(B, C, H, W)`` by the angles of its pixel grid ``linspace(0, 1)`` per axis."""
        _, _, h, w = x.shape
        rows = torch.linspace(0, 1, h, device=x.device, dtype=x.dtype)
        cols = torch.linspace(0, 1, w, device=x.device, dtype=x.dtype)
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(h * w, 2)
        angle = (coords @ self.freqs.to(x.dtype)).t().reshape(1, self.dim, h, w)
        x1, x2 = x.chunk(2, dim=1)
        return x * angle.cos() + torch.cat([-x2, x1], dim=1) * angle.sin()


def averaged_attention(
    q: Tensor,
    k: Tensor,
    value: Tensor,
    num_heads: int,
    *,
    mask: Tensor | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Tensor:
    """Head-averaged softmax attention weights of projected ``q``/``k`` applied to ``value``.

    Args:
        q: projected queries ``(B, N, E)`` (bias included, not yet scaled).
        k: projected keys ``(B, M, E)``.
        value: ``(B, M, C)``, used as is (not projected).
        num_heads: heads; each uses ``E / num_heads`` channels and scale ``(E / num_heads) ** -0.5``.
        mask: optional ``(N, M)`` bool, ``True`` where a query may not attend (every row needs a ``False``).
        chunk_elements: bound on the scores computed at once.

    Returns:
        ``(B, N, C)`` in the dtype of ``value``.
    """
    b, n, e = q.shape
    m, d = k.shape[1], e // num_heads
    q = q.view(b, n, num_heads, d).transpose(1, 2) * d**-0.5
    k = k.view(b, m, num_heads, d).transpose(1, 2)
    rows = max(1, chunk_elements // max(1, b * num_heads * m))
    parts = []
    for i0 in range(0, n, rows):
        scores = q[:, :, i0 : i0 + rows] @ k.transpose(-2, -1)  # (B, heads, rows, M)
        if mask is not None:
            scores = scores.masked_fill(mask[i0 : i0 + rows], float("-inf"))
        weights = scores.softmax(dim=-1).mean(dim=1)
        parts.append(weights.to(value.dtype) @ value)
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def check_qk_heads(operator: str, qk_dim: int, num_heads: int) -> None:
    """JAFAR's and AnyUp's cross-option rule: ``qk_dim`` a multiple of 8 (the RoPE's 4 sin/cos
    pairs per axis) and of ``num_heads``."""
    if qk_dim % 8 or qk_dim % num_heads:
        raise InvalidOptionError(
            f"operator '{operator}': qk_dim={qk_dim} must be a multiple of 8 and of num_heads={num_heads}"
        )
