"""ReSFU's fine-grained neighbour selection (FNS) aggregation on the fused Triton reassembly.

As in :mod:`operators._fns`, the ``k x k`` clamped bilinear taps of every HR pixel fold into a
``(k+2) x (k+2)`` kernel on the replicate-padded integer LR window (:func:`_fns.fns_kernels`, a
channel-free ``(B, (k+2)**2, H, W)`` float32 tensor, autograd through PyTorch), and the channel
sum runs in :func:`operators._triton_reassembly.reassemble_triton`, forward and backward. No
``(B, C, k*k, H, W)`` tensor exists; the gradients are exact (no border drop, unlike the official
``FNS_Attn`` backward).
"""

from __future__ import annotations

from torch import Tensor

from ._fns import _check, fns_kernels
from ._triton_reassembly import check_device, reassemble_triton


def fns_aggregate_triton(x: Tensor, attn: Tensor, kernel_size: int, scale: int) -> Tensor:
    """:func:`operators._fns.fns_aggregate` with the Triton reassembly (same arguments and result)."""
    _check(x, attn, kernel_size, scale)
    check_device(x, "fns")
    kernels = fns_kernels(attn, kernel_size, scale)
    return reassemble_triton(x, kernels, kernel_size + 2, scale, padding_mode="replicate")
