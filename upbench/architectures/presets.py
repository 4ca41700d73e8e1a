"""Named sizes of the encoders and heads (``preset=`` of :func:`~upbench.architectures.build_model`).

``tiny`` presets train on 2 CPU cores in seconds at 64-128 px; ``b0``-``b5`` follow SegFormer's
MiT-B0..B5 as configured in mmseg (``configs/segformer/segformer_mit-b*_8xb2-160k_ade20k-512x512.py``:
head width 256 for every size) and ``vit_s``/``vit_b`` follow ViT-S/16 and ViT-B/16 as used by
Segmenter in mmseg (``configs/_base_/models/segmenter_vit-b16_mask.py``: LayerNorm eps 1e-6, class
token, bicubic position-embedding resize). These sizes match the official pretrained checkpoints
(see :mod:`upbench.architectures.pretrained`).
"""

from __future__ import annotations

from dataclasses import dataclass

from upbench.errors import ConfigError


@dataclass(frozen=True)
class MiTPreset:
    """A MiT encoder with an all-MLP head: per-stage widths, depths, heads, reduction ratios."""

    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    heads: tuple[int, int, int, int]
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    embed_dim: int = 256  # width of the all-MLP head
    drop_path: float = 0.1
    ln_eps: float = 1e-6  # mmseg MixVisionTransformer norm_cfg=dict(type='LN', eps=1e-6)


@dataclass(frozen=True)
class ViTPreset:
    """A ViT encoder with patch 16 and an FCN head."""

    dim: int
    depth: int
    heads: int
    mlp_ratio: int = 4
    img_size: int = 512  # grid of the learned position embedding (resized to each input)
    drop_path: float = 0.1
    ln_eps: float = 1e-6  # Segmenter's backbone_norm_cfg = dict(type='LN', eps=1e-6)
    pos_interpolation: str = "bicubic"  # mmseg VisionTransformer interpolate_mode in Segmenter


MIT_PRESETS: dict[str, MiTPreset] = {
    "tiny": MiTPreset(dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), heads=(1, 1, 2, 4), embed_dim=32, drop_path=0.0),
    "b0": MiTPreset(dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), heads=(1, 2, 5, 8), embed_dim=256),
    "b1": MiTPreset(dims=(64, 128, 320, 512), depths=(2, 2, 2, 2), heads=(1, 2, 5, 8), embed_dim=256),
    "b2": MiTPreset(dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), heads=(1, 2, 5, 8), embed_dim=256),
    "b3": MiTPreset(dims=(64, 128, 320, 512), depths=(3, 4, 18, 3), heads=(1, 2, 5, 8), embed_dim=256),
    "b4": MiTPreset(dims=(64, 128, 320, 512), depths=(3, 8, 27, 3), heads=(1, 2, 5, 8), embed_dim=256),
    "b5": MiTPreset(dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), heads=(1, 2, 5, 8), embed_dim=256),
}

VIT_PRESETS: dict[str, ViTPreset] = {
    "tiny": ViTPreset(dim=64, depth=4, heads=2, img_size=128, drop_path=0.0),
    "vit_s": ViTPreset(dim=384, depth=12, heads=6, img_size=512),
    "vit_b": ViTPreset(dim=768, depth=12, heads=12, img_size=512),
}


def lookup(table: dict[str, object], preset: str, architecture: str) -> object:
    """The preset ``preset`` of ``architecture`` or a :class:`ConfigError` listing the valid ones."""
    if preset not in table:
        raise ConfigError(f"architecture '{architecture}' has no preset '{preset}'; choose from {', '.join(table)}")
    return table[preset]
