"""FCN head of the plain model: one operator jump from 1/16, then a 1x1 classifier.

This is mmseg's ``FCNHead`` with ``num_convs=0`` as in ReSFU's Segmenter config: the operator
upsamples the ViT feature ``scale`` times (guided by an :class:`~upbench.architectures.guides.ImageStem`
at the target resolution when the operator is guided), and a 1x1 convolution classifies it.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from upbench.architectures.guides import ImageStem
from upbench.registry import create_operator, operator_info


class FCNHead(nn.Module):
    """``forward(feature, images) -> (logits at 1/(16/scale), features dict)``.

    Args:
        in_channels: channels of the encoder feature.
        num_classes: output classes.
        operator: registry name of the upsampler.
        scale: upsampling ratio (4, 8 or 16 from stride 16).
        operator_options: options passed to :func:`upbench.create_operator`.
        guide_channels: channels of the image stem (built only for guided operators, so that
            unguided operators are measured without an unused stem).
        dropout: dropout before the classifier (0 in ReSFU's config).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        operator: str,
        scale: int,
        operator_options: dict[str, Any] | None = None,
        guide_channels: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        guided = operator_info(operator).guided
        self.stem = ImageStem(16 // scale, guide_channels) if guided else None
        self.upsampler = create_operator(
            operator,
            in_channels,
            scale,
            guide_channels=guide_channels if guided else None,
            **(operator_options or {}),
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, feature: Tensor, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        guide = self.stem(images) if self.stem is not None else None
        up = self.upsampler(feature, guide)
        features = {"encoder": feature, "upsampled": up}
        if guide is not None:
            features["guide"] = guide
        return self.classifier(self.dropout(up)), features
