"""FeatUp's JBU stack: learned joint bilateral upsampling guided by the image (Fu et al., ICLR 2024).

Official code: mhamilton723/FeatUp ``featup/upsamplers.py`` classes ``JBULearnedRange`` and
``JBUStack``; the per-pixel filtering is the custom CUDA/C++ extension ``AdaptiveConv``
(``featup/adaptive_conv_cuda``), which FeatUp's users often cannot build (FeatUp #8, #61, #71).

Method. Each stage ``JBULearnedRange`` upsamples ``source`` to the size of its guidance (the image
average-pooled to that size) in three steps:

1. a bicubic upsampling of ``source`` to the guidance size (``align_corners=False``);
2. a ``d x d`` kernel per HR pixel (``d = 2*radius + 1 = 7``): a range kernel, the softmax over the
   window of ``exp(range_temp) * <q(p), q(p + n)>`` with ``q = range_proj(guidance)`` (1x1 conv,
   GELU, Dropout2d, 1x1 conv to ``key_dim = 32``), times a Gaussian spatial kernel
   ``exp(-|n|^2 / (2 sigma_spatial^2))`` on the ``[-1, 1]^2`` grid of the window, normalised to sum 1,
   plus ``0.1 * fixup_proj([kernel, guidance])`` (1x1 conv, GELU, Dropout2d, 1x1 conv);
3. the adaptive convolution ``out(p) = sum_n K_p(n) hr_source(p + n)``, reflect-padded.

The stack applies 4 stages of x2 (the image pooled to ``2h, 4h, 8h, 16h``) and adds
``0.1 * fixup_proj(out)`` (Dropout2d(0.2), 1x1 conv).

Here. The adaptive convolution is :func:`operators._reassembly.reassemble` at ratio 1 (a bounded,
row-chunked gather instead of the CUDA kernel, and instead of FeatUp's unfold fallback that runs out
of memory, FeatUp #21), and the range logits are :func:`operators._window_similarity.window_similarity`
at ratio 1; both with reflect padding. The parameter names are FeatUp's, so a ``JBUStack`` state dict
(``upsampler.`` prefix of FeatUp's checkpoints removed) loads with ``strict=True`` at scale 16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from upbench.errors import InputShapeError
from upbench.registry import register_operator
from upbench.upsampler import Upsampler
from upbench_operators._reassembly import reassemble, softmax_float32
from upbench_operators._window_similarity import window_similarity

RADIUS = 3
KEY_DIM = 32


class JBULearnedRange(nn.Module):
    """One FeatUp JBU stage: ``forward(source, guidance)`` -> ``source`` at the guidance's size.

    Submodule and parameter names as FeatUp's ``JBULearnedRange``; ``scale`` and ``feat_dim`` are
    kept for the signature only (FeatUp does not use them either).
    """

    def __init__(self, guidance_dim: int, feat_dim: int, key_dim: int, scale: int = 2, radius: int = RADIUS) -> None:
        super().__init__()
        self.scale = scale
        self.radius = radius
        self.diameter = radius * 2 + 1
        self.guidance_dim = guidance_dim
        self.key_dim = key_dim
        self.feat_dim = feat_dim
        d2 = self.diameter**2
        self.range_temp = nn.Parameter(torch.tensor(0.0))
        self.range_proj = nn.Sequential(
            nn.Conv2d(guidance_dim, key_dim, 1, 1), nn.GELU(), nn.Dropout2d(0.1), nn.Conv2d(key_dim, key_dim, 1, 1)
        )
        self.fixup_proj = nn.Sequential(
            nn.Conv2d(guidance_dim + d2, d2, 1, 1), nn.GELU(), nn.Dropout2d(0.1), nn.Conv2d(d2, d2, 1, 1)
        )
        self.sigma_spatial = nn.Parameter(torch.tensor(1.0))

    def get_range_kernel(self, x: Tensor) -> Tensor:
        """Softmax over the ``d x d`` window of the scaled key similarities, ``(B, d*d, H, W)``."""
        proj_x = self.range_proj(x)
        logits = window_similarity(proj_x, proj_x, self.diameter, 1, padding_mode="reflect")
        pos_temp = self.range_temp.exp().clamp(1e-4, 1e4)
        return softmax_float32(pos_temp * logits, dim=1).to(proj_x.dtype)

    def get_spatial_kernel(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The Gaussian of the window offsets on a ``[-1, 1]`` grid, ``(1, d*d, 1, 1)``."""
        dist = torch.linspace(-1, 1, self.diameter, device=device, dtype=dtype).square()
        sq_dist = dist.view(-1, 1) + dist.view(1, -1)
        return torch.exp(-sq_dist / (2 * self.sigma_spatial.to(dtype) ** 2)).reshape(1, self.diameter**2, 1, 1)

    def forward(self, source: Tensor, guidance: Tensor) -> Tensor:
        range_kernel = self.get_range_kernel(guidance)
        combined = range_kernel * self.get_spatial_kernel(source.device, range_kernel.dtype)
        combined = combined / combined.sum(1, keepdim=True).clamp(1e-7)
        combined = combined + 0.1 * self.fixup_proj(torch.cat([combined, guidance.to(combined.dtype)], dim=1))
        hr_source = F.interpolate(source, guidance.shape[-2:], mode="bicubic", align_corners=False)
        return reassemble(hr_source, combined, self.diameter, 1, padding_mode="reflect")


def stage_sizes(lr_size: tuple[int, int], out_size: tuple[int, int], stages: int) -> list[tuple[int, int]]:
    """Output size of every stage: x2 per stage as FeatUp, the last one at ``out_size``."""
    h, w = lr_size
    return [(h * 2**k, w * 2**k) for k in range(1, stages)] + [tuple(out_size)]


@register_operator(
    "featup_jbu",
    title="FeatUp (JBU stack)",
    guided=True,
    paper="ICLR 2024, arXiv:2403.10516",
    scales=None,
    any_size=True,
    family="task-agnostic",
    code="mhamilton723/FeatUp@6b5a6c0 featup/upsamplers.py JBULearnedRange, JBUStack (+ adaptive_conv_cuda)",
    conventions={
        "guide": "the RGB image (normalised as the backbone's input) at the output size; guide_channels=3",
        "stages": "ceil(log2(scale)) JBU stages; stage k < n outputs (2^k h, 2^k w), the last the guide's size",
        "guidance": "the guide adaptive-average-pooled to each stage's output size",
        "lr_window": "7x7 HR window (radius 3) around each HR pixel of the bicubic-upsampled source",
        "border": "reflect padding (keys and source)",
        "align_corners": "False (bicubic)",
    },
    deviations=(
        "Stages: FeatUp always has 4 x2 stages (x16). Here there are ceil(log2(scale)) stages, named up1..upN, "
        "so scale 16 (and 9..15) is FeatUp's stack; x2 stages as FeatUp and the last stage to the guide's size "
        "(e.g. 8x to 14x for ViT patch 14).",
        "AdaptiveConv (CUDA/C++ extension) is replaced by a pure-PyTorch row-chunked gather with the same "
        "arithmetic (float64 loop reference test); the range logits are computed without unfolding the keys.",
        "The range softmax is computed in float32 for float16/bfloat16 inputs and cast back.",
        "Any guide_channels is accepted (FeatUp hard-codes 3 for RGB); guide_channels defaults to 3.",
    ),
    notes=(
        "Official checkpoints: FeatUp's torch.hub weights (per backbone) store the stack under the prefix "
        "'upsampler.'; strip it and build featup_jbu with scale=16, in_channels = the backbone's dimension.",
        "Every stage map must be at least 4x4 (reflect padding of radius 3); smaller inputs are rejected.",
        "Licence of the official code: MIT.",
    ),
)
class FeatUpJBU(Upsampler):
    """FeatUp's ``JBUStack`` with ``ceil(log2(scale))`` stages ``up1..upN`` and ``fixup_proj``."""

    default_guide_channels = 3  # guided by the RGB image, as in its paper

    def __init__(self, in_channels: int, scale: int, *, guide_channels: int | None = None) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        self.stages = max(1, math.ceil(math.log2(scale)))
        for k in range(1, self.stages + 1):
            self.add_module(f"up{k}", JBULearnedRange(self.guide_channels, in_channels, KEY_DIM, radius=RADIUS))
        self.fixup_proj = nn.Sequential(nn.Dropout2d(0.2), nn.Conv2d(in_channels, in_channels, kernel_size=1))

    def check_inputs(self, x: Tensor, guide: Tensor | None, output_size: tuple[int, int] | None = None) -> None:
        super().check_inputs(x, guide, output_size)
        sizes = stage_sizes(tuple(x.shape[-2:]), tuple(guide.shape[-2:]), self.stages)
        small = [(k + 1, size) for k, size in enumerate(sizes) if min(size) <= RADIUS]
        if small:
            k, (h, w) = small[0]
            raise InputShapeError(
                f"operator '{self.name}': reflect padding of radius {RADIUS} needs every stage at least "
                f"{RADIUS + 1}x{RADIUS + 1}, but stage {k} is {h}x{w} (x is {x.shape[-2]}x{x.shape[-1]})"
            )

    def upsample(self, x: Tensor, guide: Tensor, size: tuple[int, int]) -> Tensor:
        source = x
        for k, stage_size in enumerate(stage_sizes(tuple(x.shape[-2:]), size, self.stages), start=1):
            small_guidance = F.adaptive_avg_pool2d(guide, stage_size)
            source = getattr(self, f"up{k}")(source, small_guidance)
        return (self.fixup_proj(source) * 0.1 + source).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stages={self.stages}"
