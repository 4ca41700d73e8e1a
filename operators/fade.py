"""FADE and FADE-Lite: Fusing the Assets of Decoder and Encoder (Lu et al., ECCV 2022, arXiv:2207.10392).

Official code: ``poppinace/fade`` ``FADE_L2H.py`` (classes ``FADE``, ``FADELite``, ``SemiShift``,
``SemiShiftDepthWise``, ``GateGenerator``, ``Aligner``), reassembly by mmcv's CUDA ``carafe``.

Method (x2, as the official L2H form). ``x`` is the LR decoder feature ``de``, ``guide`` the HR
encoder feature ``en``. Semi-shift kernel generation: ``en`` and ``de`` are compressed by 1x1
convolutions (``compressor_en`` with bias, ``compressor_de`` without), the **same** 3x3
``content_encoder`` is applied to both, and the LR result is nearest-upsampled and added:
``K = softmax_taps(conv3(C_en(en)) + NN_up(conv3(C_de(de))))``. ``de`` is reassembled with ``K``
on the ``k x k`` LR window at ``floor(p/s)`` (CARAFE, zero-valued out-of-range taps). A gate
``g = sigmoid(NN_up(conv1x1(de)))`` mixes the result: ``g * en + (1 - g) * CARAFE(de, K)``.
FADE compresses to 64 channels with a dense 3x3 encoder; FADE-Lite compresses straight to ``k^2``
channels with a depthwise 3x3 encoder.

Deviations (upbench's generalisations). The official code is x2 only (``F.interpolate(...,
scale_factor=2)`` in the gate and the kernel generator); upbench uses nearest x s in both places,
so x4, x8 and x16 are direct, and x2 is exactly the official computation. The official gate needs
``guide_channels == in_channels``; where they differ, the official (but commented-out) ``Aligner``
1x1 convolution maps the guide to ``in_channels`` in the gate term only. The reassembly is pure
PyTorch (``upbench_operators._reassembly``), not mmcv CUDA, and the softmax is taken in at least
float32.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import OddPositiveInt
from upbench_operators._aggregation import Aggregation, check_aggregation, softmax_reassemble
from upbench_operators._layout import channels_last


def nearest_up(t: Tensor, scale: int) -> Tensor:
    """Nearest upsampling by an integer ``scale``: ``out[..., p, q] = t[..., p // s, q // s]``.

    Identical to ``F.interpolate(t, scale_factor=s, mode="nearest")`` for integer ``s`` (the official
    x2 call), written as a repetition so that the ``floor(p/s)`` index is exact for every ``s``.
    """
    b, c, h, w = t.shape
    return t[:, :, :, None, :, None].expand(b, c, h, scale, w, scale).reshape(b, c, h * scale, w * scale)


def _xavier(module: nn.Module) -> None:
    """mmcv ``xavier_init(m, distribution='uniform')`` on every conv: xavier-uniform weight, zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class GateGenerator(nn.Module):
    """``g = sigmoid(NN_up_s(conv1x1(de)))``: one gate channel per HR pixel."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1)
        _xavier(self)

    def forward(self, de: Tensor, scale: int) -> Tensor:
        return nearest_up(self.conv(de), scale).sigmoid()


class Aligner(nn.Module):
    """1x1 convolution mapping the guide's channels to the input's (official class, unused there)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        _xavier(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SemiShift(nn.Module):
    """Semi-shift kernel logits: ``conv(C_en(en)) + NN_up_s(conv(C_de(de)))`` with one shared ``conv``.

    Args:
        in_channels_en: channels of the HR encoder feature (the guide).
        in_channels_de: channels of the LR decoder feature (``x``).
        out_channels: kernel taps ``k^2``.
        embedding_dim: compressed channels (64 for FADE; ``k^2`` for FADE-Lite).
        depthwise: depthwise 3x3 content encoder (FADE-Lite's ``SemiShiftDepthWise``).
    """

    def __init__(
        self,
        in_channels_en: int,
        in_channels_de: int,
        out_channels: int,
        embedding_dim: int = 64,
        kernel_size: int = 3,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        self.compressor_en = nn.Conv2d(in_channels_en, embedding_dim, kernel_size=1)
        self.compressor_de = nn.Conv2d(in_channels_de, embedding_dim, kernel_size=1, bias=False)
        self.content_encoder = nn.Conv2d(
            embedding_dim,
            out_channels,
            kernel_size=kernel_size,
            padding=kernel_size // 2,
            groups=out_channels if depthwise else 1,
        )
        _xavier(self)

    def forward(self, en: Tensor, de: Tensor, scale: int) -> Tensor:
        enc = self.content_encoder(self.compressor_en(channels_last(en)))  # HR convs in channels_last
        dec = self.content_encoder(self.compressor_de(de))
        return enc + nearest_up(dec, scale)


class _FADEBase(Upsampler):
    """FADE / FADE-Lite; ``x`` is the LR decoder feature, ``guide`` the HR encoder feature.

    Input ``x``: ``Tensor[B, C, h, w]``; ``guide``: ``Tensor[B, C_g, s*h, s*w]``; output
    ``Tensor[B, C, s*h, s*w]``.

    Args:
        up_kernel_size: reassembly window ``k`` (odd; the official default 5).
        gating: mix with the gate ``g * en + (1 - g) * CARAFE`` (the ECCV code always gates; the
            journal code's ``gating`` option switches it off).
        aggregation: ``"auto"`` (chunked everywhere: faster than Triton on an H100), ``"chunked"`` (memory-conscious
            reassembly), ``"naive"`` (unfold baseline) or ``"triton"`` (fused kernels; CUDA).
    """

    lite: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        up_kernel_size: OddPositiveInt = 5,
        gating: bool = True,
        aggregation: Aggregation = "auto",
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        name = type(self).info.name
        check_own_options(self, locals())
        k = up_kernel_size
        check_aggregation(name, aggregation)
        cg = self.guide_channels
        self.up_kernel_size = k
        self.gating = bool(gating)
        self.aggregation = aggregation
        self.gate_generator = GateGenerator(in_channels) if self.gating else None
        self.aligner = Aligner(cg, in_channels) if self.gating and cg != in_channels else None
        embedding = k * k if self.lite else 64
        self.ker_generator = SemiShift(cg, in_channels, k * k, embedding_dim=embedding, depthwise=self.lite)

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        assert guide is not None  # forward() has checked it
        k, s = self.up_kernel_size, self.scale
        up = softmax_reassemble(self.aggregation, x, self.ker_generator(guide, x, s), k, s)
        if self.gate_generator is None:
            return up.to(x.dtype)
        gate = self.gate_generator(x, s)
        en = guide if self.aligner is None else self.aligner(guide)
        work = torch.promote_types(torch.promote_types(up.dtype, en.dtype), gate.dtype)
        # up + gate * (en - up) = gate * en + (1 - gate) * up, in one fused pass over the HR map
        return torch.lerp(up.to(work), en.to(work), gate.to(work)).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, up_kernel_size={self.up_kernel_size}, gating={self.gating}, "
            f"aggregation={self.aggregation!r}"
        )


_CODE = (
    "poppinace/fade@e4de4dbc FADE_L2H.py ({cls}, {conv}, GateGenerator, Aligner); reassembly as "
    "open-mmlab/mmcv@a8073c74 mmcv/ops/carafe.py (carafe, group 1)"
)
_CONVENTIONS = {
    "lr_window": "integer k x k LR window centred on floor(p/s); decoder kernels and gate nearest-upsampled",
    "border": "reassembly: out-of-range taps read zero, softmax weight kept (mmcv carafe); 3x3 encoder zero-padded",
    "align_corners": "n/a (integer window, nearest upsampling)",
    "guide": "HR encoder feature; guide_channels defaults to in_channels",
}
_DEVIATIONS = (
    "Scales other than 2 (upbench's generalisation): the official code hard-codes nearest x2 in the gate "
    "and the semi-shift kernel generator; upbench uses nearest x s there and CARAFE at scale s, so x4, x8 "
    "and x16 are direct. At x2 the computation is the official one.",
    "guide_channels != in_channels: the official gate g*en + (1-g)*CARAFE(de) needs equal channels "
    "(poppinace/fade#1); upbench then adds the official (commented-out) Aligner, a 1x1 conv "
    "guide_channels -> in_channels (key 'aligner.conv'), applied to en in the gate term only. "
    "With equal channels there is no aligner and the state dict is the official one.",
    "Reassembly in pure PyTorch (upbench_operators._reassembly) instead of mmcv's CUDA carafe; runs on CPU. "
    "aggregation='triton' uses upbench's fused Triton kernels (softmax over the taps fused in; less memory, slower).",
    "Softmax over the taps in at least float32; output cast to the input dtype.",
    "Interface: forward(x=de, guide=en) instead of the official forward(en, de); constructor "
    "in_channels/guide_channels/scale for in_channels_de/in_channels_en/scale.",
)
_NOTES = (
    "Initialisation as the official code: xavier-uniform convolutions, zero biases.",
    "The content encoder's bias is added twice (once via the HR branch, once via the LR branch), as officially.",
    "gating=False follows tiny-smart/segmentation-with-upsamplers@3ae9265 fade.py (no gate_generator).",
    "aggregation='naive' uses the unfold reassembly that materialises (B, C, k*k, H, W); benchmark only.",
    "Autocast/low precision: convolutions run in the ambient dtype, the softmax in float32, the "
    "reassembly in the input dtype (or the autocast dtype), and the output is cast to the input dtype.",
)


@register_operator(
    "fade",
    title="FADE",
    guided=True,
    guide_passthrough=True,
    paper="arXiv:2207.10392 (ECCV 2022); IJCV 2024",
    code=_CODE.format(cls="FADE", conv="SemiShift"),
    conventions=_CONVENTIONS,
    deviations=_DEVIATIONS,
    notes=_NOTES,
)
class FADE(_FADEBase):
    """FADE: 64-channel compressors, dense 3x3 content encoder (``SemiShift``)."""

    lite = False


@register_operator(
    "fade_lite",
    title="FADE-Lite",
    guided=True,
    guide_passthrough=True,
    paper="arXiv:2207.10392 (ECCV 2022); IJCV 2024",
    code=_CODE.format(cls="FADELite", conv="SemiShiftDepthWise"),
    conventions=_CONVENTIONS,
    deviations=_DEVIATIONS,
    notes=_NOTES,
)
class FADELite(_FADEBase):
    """FADE-Lite: compressors straight to ``k^2`` channels, depthwise 3x3 content encoder."""

    lite = True
