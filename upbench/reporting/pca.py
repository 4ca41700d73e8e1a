"""PCA colouring of feature maps: the first three principal components as RGB."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from upbench.errors import InputShapeError

#: Components whose singular value is at most this fraction of the first one are not coloured.
RELATIVE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PCABasis:
    """A 3-component PCA fitted on pixels: ``mean [C]``, ``components [C, 3]``, display range ``lo, hi``."""

    mean: Tensor
    components: Tensor
    lo: np.ndarray
    hi: np.ndarray


def _pixels(features: Tensor) -> Tensor:
    """``[C, H, W]`` or ``[B, C, H, W]`` -> ``[pixels, C]`` in float64."""
    if features.dim() == 3:
        features = features[None]
    if features.dim() != 4:
        raise InputShapeError(f"PCA colouring: expected (C, H, W) or (B, C, H, W), got {tuple(features.shape)}")
    return features.detach().cpu().to(torch.float64).permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def pca_basis(features: Tensor) -> PCABasis:
    """Fit 3 principal components to the pixels of ``features`` (``[C, H, W]`` or ``[B, C, H, W]``).

    Signs are fixed (largest-magnitude loading positive) so that colours are deterministic; the
    display range of each component is its 1st to 99th percentile on these pixels. Components
    with (relatively) no variance are zeroed, so a map of rank < 3 does not colour its noise.
    """
    x = _pixels(features)
    mean = x.mean(0)
    _, sv, vh = torch.linalg.svd(x - mean, full_matrices=False)
    comps = vh[:3].T.clone()
    # components with almost no variance would only stretch noise to full colour: drop them
    comps[:, sv[:3] <= RELATIVE_TOLERANCE * sv[0].clamp_min(1e-300)] = 0.0
    sign = comps.gather(0, comps.abs().argmax(0, keepdim=True)).sign()
    comps *= torch.where(sign == 0, torch.ones_like(sign), sign)
    if comps.shape[1] < 3:  # fewer than 3 channels: pad with zero components
        comps = torch.cat([comps, comps.new_zeros(comps.shape[0], 3 - comps.shape[1])], 1)
    proj = ((x - mean) @ comps).numpy()
    return PCABasis(mean, comps, np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0))


def pca_rgb(feature: Tensor, basis: PCABasis | None = None) -> np.ndarray:
    """``feature`` (``[C, H, W]``) as RGB ``[H, W, 3]`` in [0, 1]: its first 3 principal components.

    Pass a shared ``basis`` (from :func:`pca_basis`) to colour several maps consistently; by
    default the basis is fitted on ``feature`` itself.
    """
    if not isinstance(feature, Tensor) or feature.dim() != 3:
        got = tuple(feature.shape) if isinstance(feature, Tensor) else type(feature).__name__
        raise InputShapeError(f"pca_rgb: expected a (C, H, W) tensor, got {got}")
    basis = basis if basis is not None else pca_basis(feature)
    if basis.mean.shape[0] != feature.shape[0]:
        raise InputShapeError(
            f"pca_rgb: basis fitted on {basis.mean.shape[0]} channels, feature has {feature.shape[0]}"
        )
    proj = ((_pixels(feature) - basis.mean) @ basis.components).numpy()
    span = np.where(basis.hi - basis.lo > 0, basis.hi - basis.lo, 1.0)
    return np.clip((proj - basis.lo) / span, 0.0, 1.0).reshape(*feature.shape[1:], 3)
