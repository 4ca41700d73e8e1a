"""Optional timm encoders for the hierarchical architecture (``preset="timm:<model name>"``).

Any timm model that can return feature maps (``features_only=True``) at strides 4, 8, 16 and 32
works, e.g. ``timm:pvt_v2_b1``, ``timm:resnet50`` or ``timm:convnext_tiny``. timm is not a
dependency of upbench: without it these presets raise a :class:`~upbench.errors.ConfigError`.
Weights are random (``pretrained=False``); nothing is downloaded.
"""

from __future__ import annotations

import importlib.util

from torch import Tensor, nn

from upbench.errors import ConfigError

PREFIX = "timm:"
STRIDES = (4, 8, 16, 32)


def timm_available() -> bool:
    """True if timm can be imported."""
    return importlib.util.find_spec("timm") is not None


class TimmEncoder(nn.Module):
    """``forward(images) -> [c1, c2, c3, c4]`` at strides 4-32 from the timm model ``name``."""

    def __init__(self, name: str, in_channels: int = 3) -> None:
        super().__init__()
        if not timm_available():
            raise ConfigError(
                f"preset '{PREFIX}{name}' needs timm, which is not installed (pip install timm)"
            )
        import timm

        try:
            self.model = timm.create_model(name, pretrained=False, features_only=True, in_chans=in_channels)
        except Exception as err:  # unknown name, or a model without feature extraction
            raise ConfigError(f"timm cannot build '{name}' as a feature extractor: {err}") from None
        reductions = list(self.model.feature_info.reduction())
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ConfigError(
                f"timm model '{name}' has feature strides {reductions}; the hierarchical architecture "
                f"needs {list(STRIDES)}"
            )
        self.indices = [reductions.index(s) for s in STRIDES]
        channels = self.model.feature_info.channels()
        self.dims = tuple(channels[i] for i in self.indices)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = self.model(x)
        return [features[i] for i in self.indices]
