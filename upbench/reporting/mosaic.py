"""The mosaic index: how much an upsampled feature map looks piecewise constant on s x s blocks.

Definition. ``F`` is a feature map ``[C, H, W]`` (or a batch ``[B, C, H, W]``) upsampled by the
integer ratio ``s``, so that its s x s blocks start at pixel 0. Along each row, let
``d_j = F[..., j+1] - F[..., j]`` be the difference between neighbouring pixels. A *border*
difference is one that crosses a block border (``(j + 1) % s == 0``); its two *adjacent within*
differences are ``d_{j-1}`` and ``d_{j+1}``, the steps just before and just after it, inside the
two blocks. Only borders with both neighbours inside the map count. The same is done along
columns. With ``E_b`` the mean squared border difference and ``E_w`` the mean squared adjacent
within difference (over borders, channels, batch and both directions):

    mosaic_index = (E_b - E_w) / (E_b + E_w)

Comparing each border step with the steps right next to it makes the index local: a smooth
gradient, the flat margins that bilinear upsampling leaves at the image edges, or the content of
the map do not move it. Range [-1, 1]:

* ``1``: the map steps across block borders and not next to them; a map that is piecewise
  constant on s x s blocks (nearest upsampling of any non-constant map) gives exactly 1;
* about ``0``: border steps are as large as the steps next to them, no block structure (any
  smooth map; bilinear upsampling with ``align_corners=False`` gives exactly 0 for ``s >= 3``).
  At ``s = 2`` bilinear steps inside a block straddle an LR sample, so a rough (noise-like) LR
  map gives up to about 0.6 there; smooth LR maps stay near 0;
* ``< 0``: the map changes next to block borders but not across them;
* a constant map (``E_b + E_w == 0``) has index ``0`` by definition: no block structure to see.

The index is unchanged when the map is multiplied by a non-zero constant or shifted by one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from upbench.errors import InputShapeError


def _along_last(f: Tensor, scale: int) -> tuple[Tensor, Tensor, int]:
    """Sums of squared border and adjacent-within differences along the last dim, and the count."""
    d = f.diff(dim=-1)
    idx = torch.arange(scale - 1, f.shape[-1] - 2, scale, device=f.device)  # border j with j+1 <= W-2
    border = d[..., idx].pow(2).sum()
    within = (d[..., idx - 1].pow(2) + d[..., idx + 1].pow(2)).sum() / 2
    return border, within, d[..., idx].numel()


def block_energies(feature: Tensor, scale: int) -> tuple[float, float]:
    """``(E_b, E_w)``: mean squared differences across block borders and right next to them."""
    f = _checked(feature, scale).to(torch.float64)
    b_x, w_x, n_x = _along_last(f, scale)
    b_y, w_y, n_y = _along_last(f.transpose(-1, -2), scale)
    n = n_x + n_y
    return float(b_x + b_y) / n, float(w_x + w_y) / n


def per_image_block_sums(feature: Tensor, scale: int) -> Tensor:
    """``[B, 2]`` float64: per map of a batch ``[B, C, H, W]``, the sums of squared border and
    adjacent-within differences (both directions). Maps of one size share their border count, so
    the index of any multiset of them is ``(sum border - sum within) / (sum border + sum within)``
    (:func:`index_from_sums`), equal to :func:`mosaic_index` of the stacked batch."""
    f = _checked(feature, scale).to(torch.float64)
    if f.dim() == 3:
        f = f[None]
    out = []
    for m in f:
        b_x, w_x, _ = _along_last(m, scale)
        b_y, w_y, _ = _along_last(m.transpose(-1, -2), scale)
        out.append(torch.stack([b_x + b_y, w_x + w_y]))
    return torch.stack(out)


def index_from_sums(border: Tensor, within: Tensor) -> Tensor:
    """The mosaic index from summed border and within energies (0 where both are 0)."""
    total = border + within
    return torch.where(total > 0, (border - within) / total.where(total > 0, torch.ones_like(total)), 0.0)


def mosaic_index(feature: Tensor, scale: int) -> float:
    """Mosaic index of ``feature`` (``Tensor[C, H, W]`` or ``[B, C, H, W]``) at ``scale``, in [-1, 1].

    1 when the map is piecewise constant on ``scale`` x ``scale`` blocks, about 0 without block
    structure, 0 for a constant map; see the module docstring for the exact definition.
    """
    e_b, e_w = block_energies(feature, scale)
    total = e_b + e_w
    if total <= 0.0:
        return 0.0
    return (e_b - e_w) / total


def _checked(feature: Tensor, scale: int) -> Tensor:
    if not isinstance(feature, Tensor):
        raise InputShapeError(f"mosaic_index: feature must be a torch.Tensor, got {type(feature).__name__}")
    if feature.dim() not in (3, 4):
        raise InputShapeError(
            f"mosaic_index: feature must be (C, H, W) or (B, C, H, W), got shape {tuple(feature.shape)}"
        )
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise InputShapeError(f"mosaic_index: scale must be an integer >= 2, got {scale!r}")
    h, w = feature.shape[-2:]
    if max(h, w) < scale + 2:
        raise InputShapeError(
            f"mosaic_index: a {h}x{w} map has no {scale}x{scale} block border with a pixel on each side; "
            f"need a side of at least {scale + 2}"
        )
    if not torch.isfinite(feature).all():
        raise InputShapeError("mosaic_index: feature contains NaN or infinite values")
    return feature.detach()
