"""CARAFE: Content-Aware ReAssembly of FEatures (Wang et al., ICCV 2019, arXiv:1905.02188).

Official code: mmcv ``CARAFEPack`` (``mmcv/ops/carafe.py``) with the compiled ``carafe`` op
(``mmcv/ops/csrc/common/cuda/carafe*_cuda_kernel.cuh``), CUDA only.

Method. Kernels are predicted from the LR input alone (no guide): a 1x1 channel compressor
``C -> 64``, a 3x3 content encoder ``64 -> k_up^2 * G * s^2``, ``pixel_shuffle(s)`` to HR and a
softmax over the ``k_up^2`` taps of every group. HR pixel ``p`` then reassembles the ``k_up x k_up``
LR window centred on ``floor(p / s)``: ``out(p) = sum_n K_p(n) x(floor(p/s) + n)``. Taps outside
the LR map read zero but keep their softmax weight (as the mmcv kernel, which skips them), so
border outputs are attenuated.

Deviations. The reassembly runs in pure PyTorch through ``upbench_operators._reassembly``
(batched matmuls over LR windows, row-chunked) instead of mmcv's CUDA kernel: same arithmetic, but
it also runs on CPU and in any float dtype. The softmax is taken in at least float32 (mmcv takes it
in the mask dtype). The constructor names follow upbench (``in_channels``, ``scale``) instead of
mmcv's ``channels``, ``scale_factor``; the submodules keep mmcv's names, so ``CARAFEPack`` state
dicts load with ``strict=True``.
"""

from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F
from torch import Tensor, nn

from upbench.errors import InvalidOptionError
from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import Bounds, PositiveInt
from upbench_operators._aggregation import Aggregation, check_aggregation, reassembly, resolve, softmax_reassemble
from upbench_operators._reassembly import softmax_float32

#: The most kernel taps (``up_kernel ** 2 * up_group``) mmcv's CUDA kernel holds: it stages one
#: float per tap and warp lane in a shared buffer of 2 x 6144 floats (``MAX_SHARED_SCALAR_T``,
#: ``THREADS_PER_PIXEL = 32``), so it cannot run more than 12288 / 32 = 384 taps; hence
#: ``up_kernel <= 19`` at ``up_group = 1``. The paper uses ``up_kernel`` 3 to 7 (5 by default).
#: Larger windows are not CARAFE as published, and their content encoder grows as ``up_kernel ** 2``
#: (``up_kernel = 1001`` at x4 would need 37 GB of weights alone).
MAX_TAPS = 384


@register_operator(
    "carafe",
    title="CARAFE",
    guided=False,
    guide_passthrough=False,
    paper="arXiv:1905.02188 (ICCV 2019)",
    code=(
        "open-mmlab/mmcv@a8073c74 mmcv/ops/carafe.py (CARAFEPack; kernel_normalizer, feature_reassemble) "
        "and mmcv/ops/csrc/common/cuda/carafe_naive_cuda_kernel.cuh (reassembly indexing)"
    ),
    conventions={
        "lr_window": "integer k_up x k_up LR window centred on floor(p/s)",
        "border": "out-of-range taps read zero; their softmax weight is kept (as mmcv)",
        "align_corners": "n/a (integer window)",
        "kernel_prediction": "from the LR input only (unguided); pixel_shuffle(s) of the encoder output",
    },
    deviations=(
        "Reassembly in pure PyTorch (upbench_operators._reassembly.reassemble: batched matmuls over LR "
        "windows, row-chunked) instead of mmcv's CUDA kernels; same sums, so it also runs on CPU. "
        "aggregation='triton' uses upbench's fused Triton kernels (operators/_triton_reassembly.py) instead, "
        "with kernel_normalizer's softmax fused into them (less memory, slower; docs/gpu.md).",
        "Softmax over the taps is computed in at least float32 (mmcv: in the mask dtype); the result is "
        "cast back to the input dtype.",
        "Constructor arguments channels/scale_factor are upbench's in_channels/scale; submodule and "
        "parameter names are mmcv's (channel_compressor, content_encoder).",
    ),
    notes=(
        "Parameters grow with s^2: the content encoder has k_up^2 * up_group * s^2 output channels "
        "(100 at x2, 6400 at x16 with the defaults).",
        "Initialisation as mmcv: xavier-uniform convolutions with zero bias, content encoder normal(0, 0.001).",
        "aggregation='naive' uses the unfold reassembly that materialises (B, C, k*k, H, W); benchmark only.",
        "Autocast/low precision: convolutions run in the ambient dtype, the softmax in float32, the "
        "reassembly in the input dtype (or the autocast dtype), and the output is cast to the input dtype.",
    ),
)
class CARAFE(Upsampler):
    """CARAFE upsampling (mmcv ``CARAFEPack``); ignores ``guide``.

    Input ``x``: ``Tensor[B, C, h, w]``; output ``Tensor[B, C, s*h, s*w]``.

    Args:
        up_kernel: reassembly window size ``k_up`` (odd, at most 19: see :data:`MAX_TAPS`).
        up_group: channel groups, each with its own kernel; must divide ``in_channels``
            (and ``up_kernel ** 2 * up_group <= 384``).
        encoder_kernel: size of the content encoder convolution.
        encoder_dilation: dilation of the content encoder; ``(encoder_kernel - 1) * encoder_dilation``
            must be even so that mmcv's padding keeps the LR size.
        compressed_channels: output channels of the 1x1 channel compressor.
        aggregation: ``"auto"`` (chunked everywhere: faster than Triton on an H100), ``"chunked"`` (memory-conscious
            reassembly), ``"naive"`` (unfold baseline) or ``"triton"`` (fused kernels; CUDA).
    """

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        up_kernel: Annotated[int, Bounds(ge=1, le=19, odd=True)] = 5,
        up_group: PositiveInt = 1,
        encoder_kernel: PositiveInt = 3,
        encoder_dilation: PositiveInt = 1,
        compressed_channels: PositiveInt = 64,
        aggregation: Aggregation = "auto",
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        check_own_options(self, locals())
        if (encoder_kernel - 1) * encoder_dilation % 2:
            raise InvalidOptionError(
                f"operator 'carafe': encoder_kernel={encoder_kernel} with encoder_dilation={encoder_dilation} "
                "does not keep the LR size; (encoder_kernel - 1) * encoder_dilation must be even"
            )
        if up_kernel * up_kernel * up_group > MAX_TAPS:
            raise InvalidOptionError(
                f"operator 'carafe': up_kernel={up_kernel} with up_group={up_group} gives "
                f"{up_kernel * up_kernel * up_group} taps; mmcv's CARAFE kernel holds at most {MAX_TAPS} "
                "(up_kernel ** 2 * up_group)"
            )
        if in_channels % up_group:
            raise InvalidOptionError(f"operator 'carafe': up_group={up_group} must divide in_channels={in_channels}")
        check_aggregation("carafe", aggregation)
        self.up_kernel = up_kernel
        self.up_group = up_group
        self.encoder_kernel = encoder_kernel
        self.encoder_dilation = encoder_dilation
        self.compressed_channels = compressed_channels
        self.aggregation = aggregation
        self.channel_compressor = nn.Conv2d(in_channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(
            compressed_channels,
            up_kernel * up_kernel * up_group * scale * scale,
            encoder_kernel,
            padding=(encoder_kernel - 1) * encoder_dilation // 2,
            dilation=encoder_dilation,
        )
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's initialisation: xavier-uniform convs, content encoder normal(std=0.001), zero biases."""
        nn.init.xavier_uniform_(self.channel_compressor.weight)
        nn.init.zeros_(self.channel_compressor.bias)
        nn.init.normal_(self.content_encoder.weight, std=0.001)
        nn.init.zeros_(self.content_encoder.bias)

    def kernel_normalizer(self, mask: Tensor) -> Tensor:
        """``(B, k^2*G*s^2, h, w)`` logits -> ``(B, G*k^2, s*h, s*w)`` kernels, softmax over each group's taps."""
        mask = F.pixel_shuffle(mask, self.scale)
        b, _, hh, ww = mask.shape
        mask = softmax_float32(mask.view(b, self.up_group, -1, hh, ww), dim=2)
        return mask.view(b, -1, hh, ww)

    def feature_reassemble(self, x: Tensor, mask: Tensor) -> Tensor:
        """Reassemble ``x`` with the normalised kernels ``mask`` on the zero-padded LR window."""
        return reassembly(self.aggregation, x)(
            x, mask, self.up_kernel, self.scale, groups=self.up_group, padding_mode="zeros"
        )

    def upsample(self, x: Tensor, guide: Tensor | None) -> Tensor:
        mask = self.content_encoder(self.channel_compressor(x))
        if resolve(self.aggregation, x) == "triton":  # kernel_normalizer's softmax runs inside the Triton kernels
            logits = F.pixel_shuffle(mask, self.scale)
            return softmax_reassemble("triton", x, logits, self.up_kernel, self.scale, groups=self.up_group)
        return self.feature_reassemble(x, self.kernel_normalizer(mask)).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, up_kernel={self.up_kernel}, up_group={self.up_group}, "
            f"aggregation={self.aggregation!r}"
        )
