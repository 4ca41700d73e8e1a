"""Segmentation models in which a registered upsampler does the decoder's upsampling.

``hierarchical``: a MiT (SegFormer) encoder with the all-MLP head, protocols ``jump`` (ReSFU's:
one step per stage to stride 4, guided by the projected c1) and ``cascade`` (FADE/SAPA's chained
x2 steps). ``plain``: a ViT/16 encoder with an FCN head and one direct jump x4, x8 or x16,
guided by a shallow image stem. Public API: :func:`build_model` and :class:`SegmentationModel`.
"""

from __future__ import annotations

from upbench.architectures.model import (
    ARCHITECTURES,
    PLAIN_SCALES,
    PROTOCOL_SCALES,
    SegmentationModel,
    build_model,
)
from upbench.architectures.presets import MIT_PRESETS, VIT_PRESETS

__all__ = [
    "ARCHITECTURES",
    "MIT_PRESETS",
    "PLAIN_SCALES",
    "PROTOCOL_SCALES",
    "VIT_PRESETS",
    "SegmentationModel",
    "build_model",
]
