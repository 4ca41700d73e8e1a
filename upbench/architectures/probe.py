"""The probe architecture: a frozen ViT, an upsampler to the image resolution, a linear 1x1 probe.

This is the evaluation protocol of the task-agnostic upsamplers (FeatUp, JAFAR, LoftUp, AnyUp, NAF):
features of a frozen backbone are upsampled from stride ``p`` (the patch size) to the image resolution,
guided by the RGB image (``guide_channels=3``), and only a 1x1 convolution is trained on top; logits are
evaluated at label (image) resolution with the same metrics as the other suites.

* Backbone: the built-in ViT/16 presets (``tiny``, ``vit_s``; random weights) or any timm ViT
  (``preset="timm:vit_small_patch14_dinov2"`` etc.; needs timm), always frozen (``requires_grad=False``,
  kept in eval mode). ``backbone_weights``: a local ``state_dict`` file loaded strictly (DINOv2 is
  distributed as such a file; for timm presets it goes through timm's own checkpoint filter).
* Upsampler, by ``protocol``: ``"trained"`` (its parameters learn with the task loss, as LoftUp's
  probing does for its own upsampler) or ``"frozen"`` (fixed, e.g. an official checkpoint given as
  ``upsampler_weights``, loaded strictly, as JAFAR's and AnyUp's probing). Ratio = the patch size.
* Probe: ``nn.Conv2d(dim, num_classes, 1)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from upbench.architectures.presets import VIT_PRESETS, ViTPreset, lookup
from upbench.architectures.timm_backbone import PREFIX, timm_available
from upbench.architectures.vit import PATCH, ViT
from upbench.errors import ConfigError
from upbench.registry import create_operator, operator_info

PROBE_PROTOCOLS = ("trained", "frozen")


def load_weights(module: nn.Module, path: str | Path, what: str) -> None:
    """Load a local ``state_dict`` file into ``module`` strictly; one :class:`ConfigError` line if it does not fit."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} weights: no such file {file}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ConfigError(f"{what} weights {file} do not fit: {' '.join(first[:2])[:300]}") from None


class TimmViT(nn.Module):
    """A timm ViT as a stride-``patch`` feature map: ``forward(images) -> (B, dim, H/p, W/p)``."""

    def __init__(self, name: str, weights: str | Path | None = None) -> None:
        super().__init__()
        if not timm_available():
            raise ConfigError(f"preset '{PREFIX}{name}' needs timm, which is not installed (pip install timm)")
        import timm

        kwargs: dict[str, Any] = {"num_classes": 0, "dynamic_img_size": True}
        if weights is not None:  # timm's filter maps e.g. DINOv2's official keys to its model
            if not Path(weights).is_file():
                raise ConfigError(f"backbone weights: no such file {weights}")
            kwargs |= {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}}
        try:
            self.model = timm.create_model(name, **kwargs)
        except Exception as err:  # unknown name, or a checkpoint that does not fit
            raise ConfigError(f"timm cannot build the ViT '{name}': {err}") from None
        self.patch = int(self.model.patch_embed.patch_size[0])
        self.dim = int(self.model.num_features)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.model.forward_features(images)[:, self.model.num_prefix_tokens :]
        h, w = images.shape[-2] // self.patch, images.shape[-1] // self.patch
        return tokens.transpose(1, 2).reshape(images.shape[0], self.dim, h, w)


class FrozenEncoder(nn.Module):
    """Wraps a backbone: no gradients, always in eval mode."""

    def __init__(self, backbone: nn.Module, patch: int, dim: int) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.patch = patch
        self.dim = dim

    def train(self, mode: bool = True) -> FrozenEncoder:
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            return self.backbone(images)


class ProbeHead(nn.Module):
    """``forward(features, images) -> (logits, features dict)``: upsample to the image size, then 1x1 conv."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        operator: str,
        scale: int,
        operator_options: dict[str, Any],
        frozen: bool,
        upsampler_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        info = operator_info(operator)
        self.guided, self.any_size = info.guided, info.any_size
        self.upsampler = create_operator(
            operator, dim, scale, guide_channels=3 if info.guided else None, **operator_options
        )
        if upsampler_weights is not None:
            load_weights(self.upsampler, upsampler_weights, f"upsampler '{operator}'")
        if frozen:
            self.upsampler.requires_grad_(False)
        self.probe = nn.Conv2d(dim, num_classes, 1)

    def forward(self, features: Tensor, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        guide = images if self.guided else None
        size = tuple(images.shape[-2:]) if self.any_size and not self.guided else None
        upsampled = self.upsampler(features, guide, output_size=size)
        out = {"upsampled": upsampled, "encoder": features}
        if guide is not None:
            out["guide"] = guide
        return self.probe(upsampled), out


def build_probe_parts(
    *,
    operator: str,
    num_classes: int,
    preset: str,
    protocol: str | None,
    scale: int | None,
    operator_options: dict[str, Any],
    backbone_weights: str | Path | None = None,
    upsampler_weights: str | Path | None = None,
) -> tuple[FrozenEncoder, ProbeHead, str, int]:
    """The encoder, the head, the protocol and the ratio (= patch size) of a probe model."""
    protocol = protocol or "trained"
    if protocol not in PROBE_PROTOCOLS:
        raise ConfigError(f"probe architecture has no protocol '{protocol}'; choose from {', '.join(PROBE_PROTOCOLS)}")
    if preset.startswith(PREFIX):
        timm_vit = TimmViT(preset[len(PREFIX) :], backbone_weights)
        encoder = FrozenEncoder(timm_vit, timm_vit.patch, timm_vit.dim)
    else:
        cfg = lookup(VIT_PRESETS, preset, "probe")
        assert isinstance(cfg, ViTPreset)
        vit = ViT(cfg)
        if backbone_weights is not None:
            load_weights(vit, backbone_weights, "backbone")
        encoder = FrozenEncoder(vit, PATCH, cfg.dim)
    if scale is not None and scale != encoder.patch:
        raise ConfigError(
            f"probe architecture upsamples by the patch size ({encoder.patch} for preset '{preset}'); "
            f"got scale={scale!r}"
        )
    head = ProbeHead(
        encoder.dim,
        num_classes,
        operator=operator,
        scale=encoder.patch,
        operator_options=operator_options,
        frozen=protocol == "frozen",
        upsampler_weights=upsampler_weights,
    )
    return encoder, head, protocol, encoder.patch
