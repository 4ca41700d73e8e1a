"""Fine-grained neighbour selection (operators/_fns.py) against a float64 plain-loop reference."""

from __future__ import annotations

import math

import pytest
import torch

from upbench.errors import InputShapeError
from upbench_operators._fns import fns_aggregate, fns_aggregate_naive, fns_kernels, fns_tap_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def fns_reference(x: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The official FNS definition, one HR pixel and one tap at a time (float64, differentiable).

    HR pixel (i, j) of an H x W output samples x at the LR point ((i + 0.5) h/H - 0.5 + dy,
    (j + 0.5) w/W - 0.5 + dx), each coordinate clamped to [0, size - 1], bilinearly from the
    four surrounding pixels, and weighs the sample by attn[dy*k + dx].
    """
    b, c, h, w = x.shape
    height, width = attn.shape[-2:]
    r = kernel_size // 2
    rows = []
    for i in range(height):
        row = []
        for j in range(width):
            acc = torch.zeros(b, c, dtype=x.dtype)
            for dy in range(kernel_size):
                for dx in range(kernel_size):
                    yc = min(max((i + 0.5) * h / height - 0.5 + dy - r, 0.0), h - 1.0)
                    xc = min(max((j + 0.5) * w / width - 0.5 + dx - r, 0.0), w - 1.0)
                    y1, x1 = math.floor(yc), math.floor(xc)
                    y2, x2 = min(y1 + 1, h - 1), min(x1 + 1, w - 1)
                    ty, tx = yc - y1, xc - x1
                    sample = (
                        x[:, :, y1, x1] * (1 - ty) * (1 - tx)
                        + x[:, :, y2, x1] * ty * (1 - tx)
                        + x[:, :, y1, x2] * (1 - ty) * tx
                        + x[:, :, y2, x2] * ty * tx
                    )
                    acc = acc + attn[:, dy * kernel_size + dx, i, j, None] * sample
            row.append(acc)
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


def random_inputs(b: int, c: int, h: int, w: int, k: int, s: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    attn = torch.randn(b, k * k, s * h, s * w, generator=g, dtype=torch.float64)
    return x, attn


@pytest.mark.parametrize(
    ("b", "c", "h", "w", "k", "s"),
    [(2, 3, 3, 4, 3, 2), (1, 2, 4, 3, 3, 3), (2, 2, 2, 3, 3, 4), (1, 2, 3, 2, 5, 2), (1, 1, 1, 2, 3, 5)],
)
def test_chunked_and_naive_match_plain_loop_reference(b, c, h, w, k, s):
    x, attn = random_inputs(b, c, h, w, k, s)
    expected = fns_reference(x, attn, k)
    torch.testing.assert_close(fns_aggregate(x, attn, k, s), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fns_aggregate_naive(x, attn, k, s), expected, rtol=1e-12, atol=1e-12)


def test_gradients_match_reference_at_the_bottom_right_border():
    """The official CUDA backward drops these gradients (docs/resfu_official.md, B3); ours are exact."""
    x, attn = random_inputs(1, 2, 3, 3, 3, 2, seed=1)
    grad_out = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    grads = []
    for fn in (lambda a, v: fns_aggregate(v, a, 3, 2), lambda a, v: fns_reference(v, a, 3)):
        a, v = attn.clone().requires_grad_(), x.clone().requires_grad_()
        (fn(a, v) * grad_out).sum().backward()
        grads.append((a.grad, v.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-12)
    assert grads[0][1][..., -1, :].abs().sum() > 0 and grads[0][1][..., :, -1].abs().sum() > 0


@pytest.mark.parametrize("s", [2, 3])
def test_gradcheck(s):
    x, attn = random_inputs(1, 2, 2, 3, 3, s, seed=2)
    x.requires_grad_()
    attn.requires_grad_()
    assert torch.autograd.gradcheck(lambda v, a: fns_aggregate(v, a, 3, s), (x, attn))
    assert torch.autograd.gradcheck(lambda v, a: fns_aggregate(v, a, 3, s, chunk_elements=1), (x, attn))


def test_row_chunks_give_the_same_result():
    x, attn = random_inputs(2, 3, 5, 4, 3, 3, seed=3)
    whole = fns_aggregate(x, attn, 3, 3)
    torch.testing.assert_close(fns_aggregate(x, attn, 3, 3, chunk_elements=1), whole, rtol=1e-13, atol=1e-13)
    chunked = fns_aggregate(x, attn, 3, 3, chunk_elements=600)
    torch.testing.assert_close(chunked, whole, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("s", "k"), [(2, 3), (3, 3), (4, 5), (7, 3)])
def test_tap_weights_reproduce_the_sample_positions(s, k):
    """Each tap's weights sum to 1 and their centroid is its continuous LR offset."""
    weights = fns_tap_weights(s, k, dtype=torch.float64)
    assert weights.shape == (s, k + 2, k)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(s, k, dtype=torch.float64))
    offsets = torch.arange(k + 2, dtype=torch.float64) - (k // 2 + 1)
    for a in range(s):
        centre = (a + 0.5) / s - 0.5
        expected = torch.arange(k, dtype=torch.float64) - k // 2 + centre
        torch.testing.assert_close(offsets @ weights[a], expected)
        assert ((weights[a] > 0).sum(0) <= 2).all()  # bilinear: at most two taps per axis


def test_folded_kernels_keep_the_attention_mass():
    x, attn = random_inputs(2, 1, 3, 2, 3, 4, seed=4)
    kernels = fns_kernels(attn, 3, 4)
    assert kernels.shape == (2, 25, 12, 8)
    torch.testing.assert_close(kernels.sum(1), attn.sum(1))


def _largest_intermediate(fn, *args) -> int:
    """Number of elements of the largest tensor any aten op produces while ``fn`` runs."""
    dispatch = pytest.importorskip("torch.utils._python_dispatch")
    sizes = []

    class Record(dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    sizes.append(t.numel())
            return out

    with Record():
        fn(*args)
    return max(sizes)


def test_chunked_path_never_materialises_all_taps():
    b, c, h, w, k, s = 2, 16, 6, 5, 3, 4
    x, attn = random_inputs(b, c, h, w, k, s, seed=5)
    all_taps = b * c * k * k * s * h * s * w
    assert _largest_intermediate(fns_aggregate_naive, x, attn, k, s) >= all_taps  # the probe can see it
    assert _largest_intermediate(fns_aggregate, x, attn, k, s) <= all_taps // 4


def test_low_precision_follows_x_dtype():
    x, attn = random_inputs(1, 4, 3, 3, 3, 2, seed=6)
    expected = fns_aggregate(x, attn, 3, 2)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 5e-2), (torch.float16, 1e-2)):
        out = fns_aggregate(x.to(dtype), attn.float(), 3, 2)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol * expected.abs().max().item())


@pytest.mark.parametrize(
    ("x_shape", "attn_shape", "k", "s", "match"),
    [
        ((1, 2, 3, 3), (1, 9, 6, 5), 3, 2, "attn must be"),
        ((1, 2, 3, 3), (1, 4, 6, 6), 3, 2, "attn must be"),
        ((2, 3, 3), (1, 9, 6, 6), 3, 2, "4-D"),
        ((1, 2, 3, 3), (1, 4, 6, 6), 2, 2, "odd"),
        ((1, 2, 3, 3), (1, 9, 6, 6), 3, 0, "scale"),
    ],
)
def test_bad_shapes_are_named(x_shape, attn_shape, k, s, match):
    for fn in (fns_aggregate, fns_aggregate_naive):
        with pytest.raises(InputShapeError, match=match):
            fn(torch.zeros(x_shape), torch.zeros(attn_shape), k, s)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    x, attn = random_inputs(2, 3, 4, 5, 3, 4, seed=7)
    expected = fns_aggregate(x, attn, 3, 4)
    torch.testing.assert_close(fns_aggregate(x.cuda(), attn.cuda(), 3, 4).cpu(), expected)
    torch.testing.assert_close(fns_aggregate_naive(x.cuda(), attn.cuda(), 3, 4).cpu(), expected)
