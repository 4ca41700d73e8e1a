"""The fused Triton aggregation kernels against float64 references, forward and gradients.

Without a GPU they run in Triton's interpreter on CPU tensors: ``tests/conftest.py`` sets
``TRITON_INTERPRET=1`` before triton is first imported (it cannot be switched later). With CUDA
the same tests run the compiled kernels on the GPU. The kernels are also compiled ahead of time
for an sm_90 GPU in a subprocess without the interpreter (Triton IR -> PTX -> cubin through the
wheel's ptxas), which checks on CPU that the code the interpreter ran compiles for the device.
References: :func:`_loop` (test_reassembly.py, the definition) and :func:`fns_reference`
(test_fns.py) for the forward, and the float64 chunked paths (gradchecked there) for gradients.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install -e '.[dev]' installs it)")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from test_fns import fns_reference  # noqa: E402
from test_reassembly import _loop  # noqa: E402

import upbench  # noqa: E402
from upbench.errors import InputShapeError, InvalidOptionError  # noqa: E402
from upbench_operators import _aggregation, _triton_fns, _triton_reassembly  # noqa: E402
from upbench_operators._fns import fns_aggregate  # noqa: E402
from upbench_operators._reassembly import reassemble  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def device() -> str:
    """Where the kernels run: the GPU, or the CPU through Triton's interpreter."""
    if torch.cuda.is_available():
        return "cuda"
    if not _triton_reassembly.INTERPRETED:
        pytest.skip("no CUDA device and Triton's interpreter is off (TRITON_INTERPRET=1 must precede import triton)")
    return "cpu"


def _softmax_groups(logits: torch.Tensor, groups: int) -> torch.Tensor:
    b, _, height, width = logits.shape
    return torch.softmax(logits.view(b, groups, -1, height, width), dim=2).view_as(logits)


def _inputs(b, c, h, w, k, s, groups, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    kernels = torch.randn(b, groups * k * k, s * h, s * w, generator=g, dtype=torch.float64)
    grad_out = torch.randn(b, c, s * h, s * w, generator=g, dtype=torch.float64)
    return x, kernels, grad_out


def _grads(fn, x, kernels, grad_out, device="cpu"):
    """``fn(x, kernels)`` and its gradients for ``grad_out``, computed on ``device``, returned on CPU."""
    x, kernels = x.detach().to(device).requires_grad_(), kernels.detach().to(device).requires_grad_()
    out = fn(x, kernels)
    gx, gk = torch.autograd.grad(out, (x, kernels), grad_out.to(device, out.dtype))
    return out.cpu(), gx.cpu(), gk.cpu()


# (b, c, h, w, k, s, groups, padding_mode, normalize): scales 2-5 (3 and 5 not powers of two),
# k = 1, 3, 5, 7 (7 pads the taps to 64), channel counts that do not fill a channel block.
CASES = [
    (2, 4, 3, 5, 5, 2, 1, "zeros", False),
    (1, 6, 3, 4, 3, 3, 2, "replicate", True),
    (1, 3, 2, 3, 3, 5, 1, "zeros", True),
    (1, 2, 2, 1, 5, 4, 1, "zeros", True),
    (1, 5, 1, 2, 7, 2, 1, "zeros", False),
    (1, 8, 3, 2, 1, 3, 4, "replicate", False),
]


@pytest.mark.parametrize(("b", "c", "h", "w", "k", "s", "groups", "mode", "normalize"), CASES)
def test_reassembly_matches_float64_references(device, b, c, h, w, k, s, groups, mode, normalize):
    x, logits, grad_out = _inputs(b, c, h, w, k, s, groups, seed=k * 10 + s)

    def reference(x_, k_):
        weights = _softmax_groups(k_, groups) if normalize else k_
        return reassemble(x_, weights, k, s, groups=groups, padding_mode=mode)

    def fused(x_, k_):
        return _triton_reassembly.reassemble_triton(x_, k_, k, s, groups=groups, padding_mode=mode, normalize=normalize)

    expected, gx, gk = _grads(reference, x, logits, grad_out)
    weights = _softmax_groups(logits, groups) if normalize else logits
    torch.testing.assert_close(expected, _loop(x, weights, k, s, groups, mode), rtol=1e-12, atol=1e-12)
    out, tx, tk = _grads(fused, x.float(), logits.float(), grad_out, device)
    assert out.dtype == torch.float32 and tx.dtype == torch.float32 and tk.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tx.double(), gx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tk.double(), gk, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 4e-3), (torch.bfloat16, 3e-2)])
def test_half_precision_accumulates_in_float32(device, dtype, tol):
    """Low-precision inputs and outputs, float32 sums: errors stay at the output rounding level.

    Tolerance relative to the largest reference magnitude: a few units of the dtype's rounding
    (float16 eps 1e-3, bfloat16 eps 8e-3), far below what float16 summation of 25 taps and 8
    channels would give.
    """
    b, c, h, w, k, s = 1, 8, 3, 4, 3, 3
    x, logits, grad_out = _inputs(b, c, h, w, k, s, 1, seed=11)

    def reference(x_, k_):
        return reassemble(x_, _softmax_groups(k_, 1), k, s)

    def fused(x_, k_):
        return _triton_reassembly.reassemble_triton(x_, k_, k, s, normalize=True)

    expected, gx, gk = _grads(reference, x.to(dtype).double(), logits.to(dtype).double(), grad_out)
    for kernel_dtype in (dtype, torch.float32):
        out, tx, tk = _grads(fused, x.to(dtype), logits.to(dtype).to(kernel_dtype), grad_out, device)
        assert (out.dtype, tx.dtype, tk.dtype) == (dtype, dtype, kernel_dtype)
        for got, want in ((out, expected), (tx, gx), (tk, gk)):
            torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol * want.abs().max().item())


@pytest.mark.parametrize(("b", "c", "h", "w", "k", "s"), [(1, 3, 3, 4, 3, 2), (2, 2, 2, 3, 3, 3), (1, 2, 2, 2, 5, 2)])
def test_fns_matches_float64_references(device, b, c, h, w, k, s):
    x, _, grad_out = _inputs(b, c, h, w, k, s, 1, seed=s)
    attn = torch.randn(b, k * k, s * h, s * w, generator=torch.Generator().manual_seed(s + 1), dtype=torch.float64)

    def fused(x_, a_):
        return _triton_fns.fns_aggregate_triton(x_, a_, k, s)

    expected, gx, ga = _grads(lambda x_, a_: fns_aggregate(x_, a_, k, s), x, attn, grad_out)
    torch.testing.assert_close(expected, fns_reference(x, attn, k), rtol=1e-12, atol=1e-12)
    out, tx, ta = _grads(fused, x.float(), attn.float(), grad_out, device)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tx.double(), gx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ta.double(), ga, rtol=1e-5, atol=1e-5)
    assert tx[..., -1, :].abs().sum() > 0 and tx[..., :, -1].abs().sum() > 0  # no border drop (B3)


OPERATORS = [
    ("carafe", {"compressed_channels": 8, "up_group": 2}, 2),
    ("fade", {}, 2),
    ("sapa", {}, 3),
    ("resfu", {"radius": 2}, 3),
    ("resfu", {"radius": 2, "neighbours": "coarse"}, 2),
]


@pytest.mark.parametrize(("name", "options", "scale"), OPERATORS)
def test_operators_with_triton_equal_chunked(device, name, options, scale, monkeypatch):
    """aggregation='triton' against 'chunked' (on CPU): output and every parameter gradient."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 convolutions on a GPU
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        _compare_operator_paths(device, name, options, scale)
    finally:
        torch.set_float32_matmul_precision(precision)


def _compare_operator_paths(device, name, options, scale):
    torch.manual_seed(0)
    c = 8
    info = upbench.operator_info(name)
    chunked = upbench.create_operator(name, c, scale, guide_channels=c, aggregation="chunked", **options)
    fused = upbench.create_operator(name, c, scale, guide_channels=c, aggregation="triton", **options)
    fused.load_state_dict(chunked.state_dict())
    fused.to(device)
    x = torch.randn(2, c, 3, 3)
    guide = torch.randn(2, c, 3 * scale, 3 * scale) if info.guided else None
    outs, grads = [], []
    for op, where in ((chunked, "cpu"), (fused, device)):
        xi = x.clone().to(where).requires_grad_()
        out = op(xi, None if guide is None else guide.to(where))
        out.square().sum().backward()
        outs.append(out.cpu())
        grads.append([t.cpu() for t in [xi.grad] + [p.grad for p in op.parameters()]])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    # Parameter gradients are sums over every output position, so two float32 summation orders
    # differ by ~1e-7 of the gradient's scale times the number of terms: the gradients of both
    # paths are held to the float64 chunked gradients, with an absolute tolerance relative to the
    # largest gradient entry of the operator (a gradient that is 0 in float64, such as a bias ahead
    # of a softmax, is float32 rounding noise on that scale).
    reference = copy.deepcopy(chunked).double()
    reference.zero_grad(set_to_none=True)
    xi = x.double().requires_grad_()
    reference(xi, None if guide is None else guide.double()).square().sum().backward()
    truth = [t.detach() for t in [xi.grad] + [p.grad for p in reference.parameters()]]
    scale = max(t.abs().max().item() for t in truth)
    for path in grads:
        for got, want in zip(path, truth):
            torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6 * scale)


def _largest_float_intermediate(fn, *args, **kwargs) -> int:
    """Elements of the largest floating-point tensor any aten op makes while ``fn`` runs.

    Floating point only: Triton's interpreter moves tensors through byte (uint8) views.
    """
    dispatch = pytest.importorskip("torch.utils._python_dispatch")
    sizes = [0]

    class Record(dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    sizes.append(t.numel())
            return out

    with Record():
        fn(*args, **kwargs)
    return max(sizes)


def test_fused_path_never_materialises_all_taps(device):
    """No aten op of the Triton FNS/reassembly wrappers makes a (B, C, k*k, H, W)-sized tensor."""
    b, c, h, w, k, s = 1, 16, 3, 3, 3, 4
    x, _, _ = _inputs(b, c, h, w, k, s, 1, seed=3)
    x = x.to(device)
    attn = torch.rand(b, k * k, s * h, s * w, dtype=torch.float64, device=device)
    all_taps = b * c * k * k * s * h * s * w
    fns = _triton_fns.fns_aggregate_triton
    assert _largest_float_intermediate(fns, x.float(), attn.float(), k, s) <= all_taps // 4
    fused = _triton_reassembly.reassemble_triton
    assert _largest_float_intermediate(fused, x.float(), attn.float(), k, s, normalize=True) <= all_taps // 4


@triton.jit
def _window_probe(win_ptr, k_offsets_ptr, mask_ptr, G, H, W, WP, S, KS: tl.constexpr, K2P: tl.constexpr,
                  BLOCK_P: tl.constexpr):  # fmt: skip
    """Stores what :func:`_triton_reassembly._window` gives each program, one (K2P, BLOCK_P) tile each."""
    _, _, bg, _, _, _, _, wmask, win, k_offsets = _triton_reassembly._window(G, H, W, WP, S, KS, K2P, BLOCK_P)
    tile = (bg * tl.num_programs(0) + tl.program_id(0)) * (K2P * BLOCK_P)
    slot = tile + tl.arange(0, K2P)[:, None] * BLOCK_P + tl.arange(0, BLOCK_P)[None, :]
    tl.store(win_ptr + slot, win.to(tl.int64))
    tl.store(k_offsets_ptr + slot, k_offsets.to(tl.int64))
    tl.store(mask_ptr + slot, wmask.to(tl.int8))


def test_the_window_set_up_shared_by_the_forward_and_dk_kernels_addresses_the_right_values(device):
    """Gathering through ``_window``'s offsets gives every HR pixel the ``k x k`` window of its LR
    cell (``F.unfold`` of the padded map) and its own weights; the mask keeps exactly the real taps
    of the real pixels. Odd sizes, so that blocks and tap slots have padding."""
    b, groups, h, w, k, s, block_p = 2, 3, 3, 5, 3, 2, 16
    height, width, k2p = s * h, s * w, triton.next_power_of_2(k * k)
    hp, wp = h + k - 1, w + k - 1
    programs = (triton.cdiv(height * width, block_p), b * groups)
    shape = (programs[1], programs[0], k2p, block_p)
    win, k_offsets = (torch.zeros(shape, dtype=torch.int64, device=device) for _ in range(2))
    mask = torch.zeros(shape, dtype=torch.int8, device=device)
    _window_probe[programs](win, k_offsets, mask, groups, height, width, wp, s, k, k2p, block_p)
    win, k_offsets, mask = (t.cpu().permute(0, 2, 1, 3).reshape(b * groups, k2p, -1) for t in (win, k_offsets, mask))
    pixels = height * width
    assert mask[:, : k * k, :pixels].all() and not mask[:, k * k :].any() and not mask[:, :, pixels:].any()
    plane = torch.randn(1, 1, hp, wp, dtype=torch.float64)
    windows = torch.nn.functional.unfold(plane, k)[0].view(k * k, h, w)  # (taps, LR rows, LR cols)
    expected = windows.repeat_interleave(s, 1).repeat_interleave(s, 2).reshape(k * k, pixels)
    kernels = torch.randn(b * groups, k * k, pixels, dtype=torch.float64)  # (B, G*k*k, H, W), flattened
    for bg in range(b * groups):
        assert torch.equal(plane.flatten()[win[bg, : k * k, :pixels]], expected)
        assert torch.equal(kernels.flatten()[k_offsets[bg, : k * k, :pixels]], kernels[bg])


def test_unsupported_inputs_get_one_clear_error(device, monkeypatch):
    fused = _triton_reassembly.reassemble_triton
    x, kernels = torch.randn(1, 2, 3, 3, device=device), torch.randn(1, 9, 6, 6, device=device)
    with pytest.raises(InputShapeError, match="float32, float16 and bfloat16"):
        fused(x.double(), kernels, 3, 2)
    with pytest.raises(InputShapeError, match="kernels must be"):
        fused(x, kernels[:, :, :5], 3, 2)
    monkeypatch.setattr(_triton_reassembly, "INTERPRETED", False)
    with pytest.raises(InputShapeError, match="needs CUDA tensors"):
        fused(x.cpu(), kernels.cpu(), 3, 2)  # CPU tensors outside the interpreter


@pytest.mark.filterwarnings("ignore:.*torch.jit.trace.*:DeprecationWarning")
def test_auto_selects_chunked_everywhere_and_triton_only_when_asked(monkeypatch):
    cuda = torch.device("cuda")
    assert _aggregation.resolve("auto", torch.zeros(1)) == "chunked"
    for dtype in (torch.float32, torch.float16, torch.float64):  # chunked was faster on an H100 (docs/gpu.md)
        assert _aggregation.resolve("auto", SimpleNamespace(device=cuda, dtype=dtype)) == "chunked"
    assert _aggregation.resolve("triton", SimpleNamespace(device=cuda, dtype=torch.float16)) == "triton"
    assert _aggregation.resolve("naive", SimpleNamespace(device=cuda, dtype=torch.float16)) == "naive"
    seen = []

    def traced(t: torch.Tensor) -> torch.Tensor:  # fvcore counts MACs under torch.jit.trace
        seen.append(_aggregation.resolve("triton", SimpleNamespace(device=cuda, dtype=torch.float16)))
        return t * 2

    torch.jit.trace(traced, torch.zeros(1), check_trace=False)
    assert seen == ["chunked"]
    monkeypatch.setattr(_aggregation, "triton_available", lambda: False)
    assert _aggregation.resolve("auto", SimpleNamespace(device=cuda, dtype=torch.float16)) == "chunked"
    with pytest.raises(InvalidOptionError, match="needs the triton package"):
        upbench.create_operator("carafe", 8, 2, aggregation="triton")
    with pytest.raises(InvalidOptionError, match="aggregation"):
        upbench.create_operator("sapa", 8, 2, aggregation="fused")


_AOT_SCRIPT = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from upbench_operators import _triton_reassembly as m

assert not m.INTERPRETED
dims = dict.fromkeys(("C", "CG", "G", "H", "W", "HP", "WP", "S"), "i32")
for dtype, normalize in (("bf16", True),):
    tile = {"KS": 5, "K2P": 32, "NORMALIZE": normalize, "BLOCK_C": m._BLOCK_C, "BLOCK_P": m._block_p(32)}
    bwd_x = {"KS": 5, "NORMALIZE": normalize, "BLOCK_C": m._BWD_X_BLOCK_C, "BLOCK_L": m._BWD_X_BLOCK_L}
    kernels = (
        (m._fwd, {"xp_ptr": dtype, "k_ptr": "fp32", "out_ptr": dtype, "lse_ptr": "fp32"}, tile),
        (m._bwd_kernels, {"xp_ptr": dtype, "k_ptr": dtype, "lse_ptr": "fp32", "gout_ptr": dtype, "gk_ptr": dtype},
         tile),
        (m._bwd_x, {"k_ptr": "fp32", "lse_ptr": "fp32", "gout_ptr": dtype, "gxp_ptr": dtype}, bwd_x),
    )
    for kernel, pointers, constants in kernels:
        signature = {n: "*" + t for n, t in pointers.items()} | dims | dict.fromkeys(constants, "constexpr")
        compiled = triton.compile(ASTSource(kernel, signature, constants), target=GPUTarget("cuda", 90, 32))
        assert ".target sm_90" in compiled.asm["ptx"] and len(compiled.asm["cubin"]) > 0, kernel
print("compiled")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the other tests compile and run the kernels")
def test_kernels_compile_for_an_sm90_gpu(tmp_path):
    """Ahead-of-time compilation (Triton IR -> PTX -> cubin) of every kernel; no GPU needed."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env |= {"TRITON_CACHE_DIR": str(tmp_path), "TRITON_DEFAULT_FP_FUSION": "1"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_AOT_SCRIPT)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]
