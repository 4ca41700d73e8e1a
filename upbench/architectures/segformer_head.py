"""All-MLP head of SegFormer with the upsampling steps done by a registered operator.

Every stage ``c_i`` is projected to ``embed_dim`` channels (1x1 conv, BN, ReLU, as mmseg's
``SegformerHead``), brought to the stride-4 resolution of ``c1``, concatenated, fused (1x1 conv,
BN, ReLU) and classified. Two protocols bring the stages up:

``jump`` (ReSFU's ``SegformerHeadDirectGuideUp``)
    one operator per stage, x2, x4 and x8 for c2, c3 and c4, each guided by the projected c1.
    The scale is passed to every operator (ReSFU's official config builds all three at x2:
    docs/resfu_official.md B6).
``cascade`` (the FADE/SAPA/DySample SegFormer head)
    chained x2 steps: c4 goes up three times guided by the projected c3, c2, c1; c3 twice
    (c2, c1); c2 once (c1); six operators in all.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from upbench.registry import create_operator

PROTOCOLS = ("jump", "cascade")


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 convolution, BatchNorm, ReLU (mmseg's ``ConvModule`` with BN)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SegFormerHead(nn.Module):
    """``forward([c1, c2, c3, c4]) -> (logits at stride 4, features dict)``.

    Args:
        in_channels: channels of the four stages.
        num_classes: output classes.
        operator: registry name of the upsampler.
        protocol: ``"jump"`` or ``"cascade"``.
        embed_dim: width of the head (256 in SegFormer-B0/B1).
        operator_options: options passed to :func:`upbench.create_operator`.
        dropout: dropout before the classifier (0.1 in SegFormer).
    """

    def __init__(
        self,
        in_channels: tuple[int, int, int, int],
        num_classes: int,
        *,
        operator: str,
        protocol: str,
        embed_dim: int = 256,
        operator_options: dict[str, Any] | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol = protocol
        self.proj = nn.ModuleList(conv_bn_relu(c, embed_dim) for c in in_channels)
        opts = operator_options or {}

        def make(scale: int) -> nn.Module:
            return create_operator(operator, embed_dim, scale, guide_channels=embed_dim, **opts)

        if protocol == "jump":
            # ups[j] brings stage j+1 (c2, c3, c4) to stride 4 in one step
            self.ups = nn.ModuleList(make(2 ** (j + 1)) for j in range(3))
        else:
            # ups[j] is the chain of stage j+1: j+1 steps of x2
            self.ups = nn.ModuleList(nn.ModuleList(make(2) for _ in range(j + 1)) for j in range(3))
        self.fuse = conv_bn_relu(4 * embed_dim, embed_dim)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def upsample_stage(self, j: int, x: Tensor, projected: list[Tensor]) -> Tensor:
        """Bring the projected stage ``j + 1`` (c2, c3 or c4) to the resolution of c1."""
        if self.protocol == "jump":
            return self.ups[j](x, projected[0])
        for step, op in enumerate(self.ups[j]):
            x = op(x, projected[j - step])  # guides: the next shallower stages, down to c1
        return x

    def forward(self, features: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        projected = [proj(f) for proj, f in zip(self.proj, features)]
        ups = [self.upsample_stage(j, projected[j + 1], projected) for j in range(3)]
        fused = self.fuse(torch.cat([ups[2], ups[1], ups[0], projected[0]], dim=1))
        logits = self.classifier(self.dropout(fused))
        return logits, {"upsampled": ups[2], "guide": projected[0], "fused": fused}
