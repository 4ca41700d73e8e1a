"""The segmentation model (encoder + head with an operator) and :func:`build_model`."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from upbench.architectures.fcn_head import FCNHead
from upbench.architectures.mit import MiT
from upbench.architectures.paramwise import param_groups as paramwise_groups
from upbench.architectures.presets import MIT_PRESETS, VIT_PRESETS, MiTPreset, ViTPreset, lookup
from upbench.architectures.probe import build_probe_parts
from upbench.architectures.segformer_head import PROTOCOLS, SegFormerHead
from upbench.architectures.timm_backbone import PREFIX, TimmEncoder
from upbench.architectures.vit import ViT
from upbench.errors import ConfigError
from upbench.upsampler import Upsampler

ARCHITECTURES = ("hierarchical", "plain", "probe")
PLAIN_SCALES = (4, 8, 16)
#: Largest single-step ratio of each hierarchical protocol (the ``scale`` of its cells).
PROTOCOL_SCALES = {"jump": 8, "cascade": 2}


class SegmentationModel(nn.Module):
    """Encoder and head; ``forward(images)`` gives logits at the image size.

    Images whose size is not a multiple of ``size_divisor`` (or smaller than twice it) are
    zero-padded at the bottom and right and the logits cropped back. Logits are resized
    (bilinear) only where the operator stops short of the image resolution.

    Attributes:
        architecture, protocol, scale, preset, operator: what was built (as in results rows).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        *,
        architecture: str,
        protocol: str,
        scale: int,
        preset: str,
        operator: str,
        size_divisor: int,
        head_takes_images: bool,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.architecture = architecture
        self.protocol = protocol
        self.scale = scale
        self.preset = preset
        self.operator = operator
        self.size_divisor = size_divisor
        self._head_takes_images = head_takes_images

    def forward(self, images: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """``images[B, 3, H, W] -> logits[B, K, H, W]`` (and the features dict if asked)."""
        if images.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        d = self.size_divisor
        # at least 2 x 2 cells at the coarsest stride: GroupNorm in training mode and some
        # operators' per-channel statistics need more than one value per channel
        pad_h, pad_w = max(-h % d, 2 * d - h), max(-w % d, 2 * d - w)
        x = F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images
        encoded = self.encoder(x)
        logits, features = self.head(encoded, x) if self._head_takes_images else self.head(encoded)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        logits = logits[..., :h, :w]
        return (logits, features) if return_features else logits

    def upsamplers(self) -> list[Upsampler]:
        """The operator instances of the head (1 for plain, 3 for jump, 6 for cascade)."""
        return [m for m in self.modules() if isinstance(m, Upsampler)]

    def operator_modules(self) -> list[nn.Module]:
        """Everything that exists only because of the operator: its instances and, in the plain
        model, the image stem built for guided operators (the cost attributed to the operator)."""
        stem = getattr(self.head, "stem", None)
        return [*self.upsamplers(), *([stem] if isinstance(stem, nn.Module) else [])]

    def param_groups(
        self,
        base_lr: float,
        weight_decay: float,
        *,
        custom_keys: dict[str, dict[str, float]] | None = None,
        custom_keys_names: str = "mmseg",
        auto_no_decay: bool = True,
    ) -> list[dict[str, Any]]:
        """Optimizer groups with operator and ``custom_keys`` multipliers (see :mod:`.paramwise`).

        By default biases, normalisation weights, position embeddings and the class token get no
        weight decay (``auto_no_decay``); ``custom_keys`` follow mmseg's ``paramwise_cfg``. Every
        group carries ``lr_mult`` and ``name``; ``lr`` is already multiplied, so a plain
        ``torch.optim`` optimizer can take the list as it is.
        """
        return paramwise_groups(
            self,
            base_lr,
            weight_decay,
            custom_keys=custom_keys,
            custom_keys_names=custom_keys_names,
            auto_no_decay=auto_no_decay,
        )


def build_model(
    architecture: str,
    *,
    operator: str,
    num_classes: int,
    preset: str = "tiny",
    scale: int | None = None,
    protocol: str | None = None,
    operator_options: dict[str, Any] | None = None,
    in_channels: int = 3,
    dropout: float | None = None,
    guide_channels: int = 32,
    backbone_weights: str | None = None,
    upsampler_weights: str | None = None,
) -> SegmentationModel:
    """Build a segmentation model whose upsampling is done by the registered ``operator``.

    Args:
        architecture: ``"hierarchical"`` (MiT + all-MLP head) or ``"plain"`` (ViT/16 + FCN head).
        operator: registry name of the upsampler; unguided operators get the same calls.
        num_classes: output classes ``K``.
        preset: ``tiny``, ``b0``-``b5`` (hierarchical) or ``tiny``, ``vit_s``, ``vit_b`` (plain);
            hierarchical also ``"timm:<name>"`` for any timm feature extractor with strides
            4-32 when timm is installed (random weights, head width 256).
        scale: plain: 4 (to 1/4, the default), 8 (to 1/2) or 16 (to full resolution);
            hierarchical: ``None`` or the protocol's largest step (8 for jump, 2 for cascade).
        protocol: hierarchical: ``"jump"`` (default) or ``"cascade"``; plain: ``None``/``"direct"``.
        operator_options: options for :func:`upbench.create_operator`.
        in_channels: image channels.
        dropout: dropout before the classifier (default 0.1 hierarchical, 0 plain).
        guide_channels: channels of the plain model's image stem (32 as in ReSFU).
        backbone_weights, upsampler_weights: probe only: local state_dict files loaded strictly
            (see :mod:`upbench.architectures.probe`; ``protocol`` ``"trained"`` or ``"frozen"`` upsampler).

    The features dict of ``model(images, return_features=True)`` has ``"upsampled"`` (plain:
    the operator output; jump: stage 4 brought to stride 4 by the x8 operator; cascade: stage 4
    after its last x2 step) and ``"guide"`` (the image stem's output or the projected stage 1;
    absent for unguided plain models), plus ``"encoder"`` (plain) or ``"fused"`` (hierarchical).

    Raises:
        ConfigError: unknown architecture, preset, protocol or scale, naming the valid choices.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    options = dict(operator_options or {})
    if architecture == "hierarchical":
        protocol = protocol or "jump"
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"hierarchical architecture has no protocol '{protocol}'; choose from {', '.join(PROTOCOLS)}"
            )
        if scale is not None and scale != PROTOCOL_SCALES[protocol]:
            raise ConfigError(
                f"hierarchical protocol '{protocol}' has a fixed largest step x{PROTOCOL_SCALES[protocol]}; "
                f"got scale={scale!r} (leave it out or use {PROTOCOL_SCALES[protocol]})"
            )
        if preset.startswith(PREFIX):
            encoder: nn.Module = TimmEncoder(preset[len(PREFIX) :], in_channels)
            dims, embed_dim = encoder.dims, 256
        else:
            cfg = lookup(MIT_PRESETS, preset, architecture)
            assert isinstance(cfg, MiTPreset)
            encoder = MiT(cfg, in_channels)
            dims, embed_dim = cfg.dims, cfg.embed_dim
        head = SegFormerHead(
            dims,
            num_classes,
            operator=operator,
            protocol=protocol,
            embed_dim=embed_dim,
            operator_options=options,
            dropout=0.1 if dropout is None else dropout,
        )
        return SegmentationModel(
            encoder,
            head,
            architecture=architecture,
            protocol=protocol,
            scale=PROTOCOL_SCALES[protocol],
            preset=preset,
            operator=operator,
            size_divisor=32,
            head_takes_images=False,
        )
    if architecture == "plain":
        if protocol not in (None, "direct"):
            raise ConfigError(f"plain architecture has only the 'direct' protocol; got protocol={protocol!r}")
        scale = 4 if scale is None else scale
        if scale not in PLAIN_SCALES:
            raise ConfigError(
                f"plain architecture supports scale {', '.join(map(str, PLAIN_SCALES))} (from stride 16 to "
                f"1/4, 1/2, full resolution); got {scale!r}"
            )
        if preset.startswith(PREFIX):
            raise ConfigError(f"timm presets ('{preset}') are available for the hierarchical architecture only")
        cfg = lookup(VIT_PRESETS, preset, architecture)
        assert isinstance(cfg, ViTPreset)
        encoder = ViT(cfg, in_channels)
        head = FCNHead(
            cfg.dim,
            num_classes,
            operator=operator,
            scale=scale,
            operator_options=options,
            guide_channels=guide_channels,
            dropout=0.0 if dropout is None else dropout,
        )
        return SegmentationModel(
            encoder,
            head,
            architecture=architecture,
            protocol="direct",
            scale=scale,
            preset=preset,
            operator=operator,
            size_divisor=16,
            head_takes_images=True,
        )
    if architecture == "probe":
        encoder, head, protocol, scale = build_probe_parts(
            operator=operator,
            num_classes=num_classes,
            preset=preset,
            protocol=protocol,
            scale=scale,
            operator_options=options,
            backbone_weights=backbone_weights,
            upsampler_weights=upsampler_weights,
        )
        return SegmentationModel(
            encoder,
            head,
            architecture=architecture,
            protocol=protocol,
            scale=scale,
            preset=preset,
            operator=operator,
            size_divisor=scale,
            head_takes_images=True,
        )
    raise ConfigError(f"unknown architecture '{architecture}'; choose from {', '.join(ARCHITECTURES)}")
