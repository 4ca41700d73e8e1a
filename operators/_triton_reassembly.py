"""Fused Triton reassembly: the ``k x k`` window aggregation of CARAFE, FADE and SAPA on the GPU.

Computes what :func:`operators._reassembly.reassemble` computes,

    out[c, p] = sum_{n in k x k} K[g(c)*k*k + n, p] * x_pad[c, floor(p / s) + n - k//2],

optionally with the softmax over each group's ``k*k`` taps fused in (``normalize=True``: ``K``
holds logits), forward and backward, in three kernels that never build a ``(B, C, k*k, H, W)``
tensor:

* ``_fwd``: one program per (block of HR pixels, batch x group). It loads the ``(k*k, pixels)``
  weight tile once (taking the softmax in registers and saving its log-sum-exp, ``B x G x H x W``
  float32, for the backward), then loops over the group's channels, gathering the LR windows as a
  ``(channels, k*k, pixels)`` tile and reducing over the taps.
* ``_bwd_kernels``: same programs; accumulates ``dL/dK[n, p] = sum_c dout[c, p] x_pad[c, win_n(p)]``
  over the channels, then applies the softmax backward ``w * (g - sum_n w g)`` in registers.
* ``_bwd_x``: one program per (block of padded LR pixels, batch x group, channel block); gathers,
  for every tap and every one of the ``s x s`` HR phases, the HR pixels whose window covers the LR
  pixel (the transpose of the forward as a gather: no atomics, deterministic).

Padding (zeros or replicate) is done by ``F.pad`` before the kernel, so the kernels only read valid
indices and PyTorch's pad backward folds the padded gradient back (exact for both modes). Loads
are cast to float32, sums accumulate in float32, and results are stored in the dtype of their
tensor (output and ``dx`` in ``x``'s, ``dK`` in ``K``'s): float32, float16 and bfloat16. Any
integer scale. The same code runs compiled on CUDA and, with ``TRITON_INTERPRET=1`` set before
Triton is imported, in Triton's interpreter on CPU tensors (how the tests check it without a GPU).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from upbench.errors import InputShapeError

from ._reassembly import PaddingMode, _check, _pad

#: dtypes the kernels load and store (accumulation is always float32).
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: True when this module's kernels were decorated in Triton's CPU interpreter (``TRITON_INTERPRET=1``).
INTERPRETED = False  # set below, once the kernels exist

# Elements of the (channels, taps, pixels) register tile of the forward and dK kernels.
_TILE_ELEMENTS = 8192
_BLOCK_C = 4
_BWD_X_BLOCK_C = 32
_BWD_X_BLOCK_L = 64


@triton.jit
def _window(G, H, W, WP, S, KS: tl.constexpr, K2P: tl.constexpr, BLOCK_P: tl.constexpr):
    """The index set-up of the forward and dK programs (one per block of HR pixels, batch x group).

    Returns the program's batch ``b``, group ``g`` and their flat index ``bg``, ``hw = H * W``, its
    HR pixels ``pix`` ``(BLOCK_P,)`` with their mask, the mask of the ``K2P`` tap slots (``KS*KS``
    used), the ``(K2P, BLOCK_P)`` window mask, ``win``: the offset of every tap of every pixel's
    window inside one padded LR channel plane (row ``pix // W // S + tap // KS``, column
    ``pix % W // S + tap % KS``, ``WP`` wide), and ``k_offsets``: the offset of every (tap, pixel)
    weight of this batch and group in the ``(B, G*KS*KS, H, W)`` kernel tensor.
    """
    bg = tl.program_id(1).to(tl.int64)
    hw = H * W
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = pix < hw
    row = pix // W
    col = pix % W
    taps = tl.arange(0, K2P)
    tmask = taps < KS * KS
    wmask = tmask[:, None] & pmask[None, :]
    win = ((row // S)[None, :] + (taps // KS)[:, None]) * WP + ((col // S)[None, :] + (taps % KS)[:, None])
    k_offsets = (bg * (KS * KS) + taps)[:, None] * hw + pix[None, :]
    return bg // G, bg % G, bg, hw, pix, pmask, tmask, wmask, win, k_offsets


@triton.jit
def _fwd(
    xp_ptr, k_ptr, out_ptr, lse_ptr,
    C, CG, G, H, W, HP, WP, S,
    KS: tl.constexpr, K2P: tl.constexpr, NORMALIZE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    b, g, bg, hw, pix, pmask, tmask, wmask, win, k_offsets = _window(G, H, W, WP, S, KS, K2P, BLOCK_P)
    kern = tl.load(k_ptr + k_offsets, mask=wmask, other=0.0)
    kern = kern.to(tl.float32)
    if NORMALIZE:
        logits = tl.where(tmask[:, None], kern, float("-inf"))
        peak = tl.max(logits, axis=0)
        e = tl.exp(logits - peak[None, :])
        total = tl.sum(e, axis=0)
        kern = e / total[None, :]
        tl.store(lse_ptr + bg * hw + pix, peak + tl.log(total), mask=pmask)
    cr = tl.arange(0, BLOCK_C)
    for c0 in range(0, CG, BLOCK_C):
        cmask = (c0 + cr) < CG
        chan = b * C + g * CG + c0 + cr
        xv = tl.load(
            xp_ptr + chan[:, None, None] * (HP * WP) + win[None, :, :],
            mask=cmask[:, None, None] & wmask[None, :, :],
            other=0.0,
        )
        acc = tl.sum(xv.to(tl.float32) * kern[None, :, :], axis=1)
        out_mask = cmask[:, None] & pmask[None, :]
        tl.store(out_ptr + chan[:, None] * hw + pix[None, :], acc.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _bwd_kernels(
    xp_ptr, k_ptr, lse_ptr, gout_ptr, gk_ptr,
    C, CG, G, H, W, HP, WP, S,
    KS: tl.constexpr, K2P: tl.constexpr, NORMALIZE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    b, g, bg, hw, pix, pmask, tmask, wmask, win, k_offsets = _window(G, H, W, WP, S, KS, K2P, BLOCK_P)
    grad = tl.zeros((K2P, BLOCK_P), dtype=tl.float32)
    cr = tl.arange(0, BLOCK_C)
    for c0 in range(0, CG, BLOCK_C):
        cmask = (c0 + cr) < CG
        chan = b * C + g * CG + c0 + cr
        go = tl.load(gout_ptr + chan[:, None] * hw + pix[None, :], mask=cmask[:, None] & pmask[None, :], other=0.0)
        xv = tl.load(
            xp_ptr + chan[:, None, None] * (HP * WP) + win[None, :, :],
            mask=cmask[:, None, None] & wmask[None, :, :],
            other=0.0,
        )
        grad += tl.sum(xv.to(tl.float32) * go.to(tl.float32)[:, None, :], axis=0)
    if NORMALIZE:
        logits = tl.load(k_ptr + k_offsets, mask=wmask, other=0.0).to(tl.float32)
        lse = tl.load(lse_ptr + bg * hw + pix, mask=pmask, other=0.0)
        weights = tl.where(wmask, tl.exp(logits - lse[None, :]), 0.0)
        grad = weights * (grad - tl.sum(weights * grad, axis=0)[None, :])
    tl.store(gk_ptr + k_offsets, grad.to(gk_ptr.dtype.element_ty), mask=wmask)


@triton.jit
def _bwd_x(
    k_ptr, lse_ptr, gout_ptr, gxp_ptr,
    C, CG, G, H, W, HP, WP, S,
    KS: tl.constexpr, NORMALIZE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr,
):  # fmt: skip
    pid_l = tl.program_id(0)
    bg = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2)
    b = bg // G
    g = bg % G
    hw = H * W
    h = H // S
    w = W // S
    lr = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    lmask = lr < HP * WP
    lr_row = lr // WP
    lr_col = lr % WP
    cr = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cr < CG
    chan = b * C + g * CG + cr
    acc = tl.zeros((BLOCK_C, BLOCK_L), dtype=tl.float32)
    for n in range(0, KS * KS):
        # HR pixels of the LR cell (i, j) use this padded LR pixel as their tap n.
        i = lr_row - n // KS
        j = lr_col - n % KS
        valid = lmask & (i >= 0) & (i < h) & (j >= 0) & (j < w)
        for a in range(0, S):
            for b_ in range(0, S):
                pix = (i * S + a) * W + (j * S + b_)
                kern = tl.load(k_ptr + (bg * (KS * KS) + n) * hw + pix, mask=valid, other=0.0).to(tl.float32)
                if NORMALIZE:
                    lse = tl.load(lse_ptr + bg * hw + pix, mask=valid, other=0.0)
                    kern = tl.where(valid, tl.exp(kern - lse), 0.0)
                go = tl.load(
                    gout_ptr + chan[:, None] * hw + pix[None, :], mask=cmask[:, None] & valid[None, :], other=0.0
                )
                acc += go.to(tl.float32) * kern[None, :]
    gmask = cmask[:, None] & lmask[None, :]
    tl.store(gxp_ptr + chan[:, None] * (HP * WP) + lr[None, :], acc.to(gxp_ptr.dtype.element_ty), mask=gmask)


INTERPRETED = type(_fwd).__name__ == "InterpretedFunction"


def _block_p(k2_padded: int) -> int:
    return max(16, min(128, _TILE_ELEMENTS // (_BLOCK_C * k2_padded)))


class _Reassemble(torch.autograd.Function):
    """Autograd wrapper of the three kernels; ``xp`` is the padded LR map (padding is outside)."""

    @staticmethod
    def forward(ctx, xp: Tensor, kernels: Tensor, kernel_size: int, scale: int, groups: int, normalize: bool):
        xp, kernels = xp.contiguous(), kernels.contiguous()
        b, c, hp, wp = xp.shape
        height, width = kernels.shape[-2:]
        k2p = triton.next_power_of_2(kernel_size * kernel_size)
        block_p = _block_p(k2p)
        out = torch.empty(b, c, height, width, dtype=xp.dtype, device=xp.device)
        lse = torch.empty(b, groups, height, width, dtype=torch.float32, device=xp.device) if normalize else kernels
        grid = (triton.cdiv(height * width, block_p), b * groups)
        _fwd[grid](
            xp, kernels, out, lse,
            c, c // groups, groups, height, width, hp, wp, scale,
            KS=kernel_size, K2P=k2p, NORMALIZE=normalize, BLOCK_C=_BLOCK_C, BLOCK_P=block_p,
        )  # fmt: skip
        ctx.save_for_backward(xp, kernels, lse)
        ctx.config = (kernel_size, scale, groups, normalize)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        xp, kernels, lse = ctx.saved_tensors
        kernel_size, scale, groups, normalize = ctx.config
        grad_out = grad_out.contiguous()
        b, c, hp, wp = xp.shape
        height, width = kernels.shape[-2:]
        grad_xp = grad_kernels = None
        dims = (c, c // groups, groups, height, width, hp, wp, scale)
        if ctx.needs_input_grad[1]:
            k2p = triton.next_power_of_2(kernel_size * kernel_size)
            block_p = _block_p(k2p)
            grad_kernels = torch.empty_like(kernels)
            _bwd_kernels[(triton.cdiv(height * width, block_p), b * groups)](
                xp, kernels, lse, grad_out, grad_kernels, *dims,
                KS=kernel_size, K2P=k2p, NORMALIZE=normalize, BLOCK_C=_BLOCK_C, BLOCK_P=block_p,
            )  # fmt: skip
        if ctx.needs_input_grad[0]:
            grad_xp = torch.empty_like(xp)
            grid = (triton.cdiv(hp * wp, _BWD_X_BLOCK_L), b * groups, triton.cdiv(c // groups, _BWD_X_BLOCK_C))
            _bwd_x[grid](
                kernels, lse, grad_out, grad_xp, *dims,
                KS=kernel_size, NORMALIZE=normalize, BLOCK_C=_BWD_X_BLOCK_C, BLOCK_L=_BWD_X_BLOCK_L,
            )  # fmt: skip
        return grad_xp, grad_kernels, None, None, None, None


def check_device(x: Tensor, name: str = "reassemble") -> None:
    """Raise :class:`InputShapeError` unless Triton can run on ``x`` (CUDA, or the CPU interpreter)."""
    if x.device.type != "cuda" and not INTERPRETED:
        raise InputShapeError(
            f"{name}: aggregation='triton' needs CUDA tensors, got {x.device.type} "
            "(use aggregation='auto' or 'chunked' on CPU; tests set TRITON_INTERPRET=1)"
        )
    if x.dtype not in SUPPORTED_DTYPES:
        raise InputShapeError(
            f"{name}: aggregation='triton' supports float32, float16 and bfloat16, got {x.dtype} "
            "(use aggregation='chunked')"
        )


@torch.compiler.disable  # torch.compile runs it eagerly (a graph break) instead of tracing the launches
def reassemble_triton(
    x: Tensor,
    kernels: Tensor,
    kernel_size: int,
    scale: int,
    *,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    normalize: bool = False,
) -> Tensor:
    """:func:`operators._reassembly.reassemble` in fused Triton kernels (same arguments and result).

    Args:
        normalize: ``kernels`` are logits; take the softmax over each group's ``k*k`` taps inside the
            kernel (equal to ``reassemble(x, softmax(kernels per group), ...)``, in float32).

    Returns:
        ``Tensor[B, C, s*h, s*w]`` in the dtype of ``x``; ``kernels`` keep their own dtype (loaded
        and accumulated in float32), and their gradient comes back in it.
    """
    if kernel_size % 2 != 1:
        raise InputShapeError(f"reassemble: kernel_size must be odd, got {kernel_size}")
    _check(x, kernels, kernel_size, scale, groups)
    check_device(x)
    if kernels.dtype not in SUPPORTED_DTYPES or kernels.device != x.device:
        raise InputShapeError(
            f"reassemble: kernels must be float32/float16/bfloat16 on {x.device}, "
            f"got {kernels.dtype} on {kernels.device}"
        )
    xp = _pad(x, kernel_size // 2, padding_mode)
    return _Reassemble.apply(xp, kernels, kernel_size, scale, groups, normalize)
