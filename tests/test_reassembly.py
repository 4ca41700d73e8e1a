"""The shared reassembly kernel against a float64 plain loop written from its definition."""

from __future__ import annotations

import pytest
import torch

from upbench_operators._reassembly import reassemble, reassemble_naive


def _loop(x, kernels, k, s, groups, padding_mode):
    """out[c, p] = sum_n K[g(c)*k*k + n, p] * x[c, floor(p/s) + n - k//2] (zeros or clamped outside)."""
    b, c, h, w = x.shape
    r = k // 2
    out = torch.zeros(b, c, s * h, s * w, dtype=torch.float64)
    cpg = c // groups
    for i in range(s * h):
        for j in range(s * w):
            ci, cj = i // s, j // s
            for n in range(k * k):
                yi, xj = ci + n // k - r, cj + n % k - r
                if padding_mode == "replicate":
                    yi, xj = min(max(yi, 0), h - 1), min(max(xj, 0), w - 1)
                elif not (0 <= yi < h and 0 <= xj < w):
                    continue
                for ch in range(c):
                    out[:, ch, i, j] += kernels[:, (ch // cpg) * k * k + n, i, j] * x[:, ch, yi, xj]
    return out


@pytest.mark.parametrize(
    ("k", "s", "groups", "mode", "chunk"),
    [(5, 2, 1, "zeros", None), (3, 3, 2, "replicate", None), (5, 4, 1, "replicate", 64), (3, 2, 2, "zeros", 50)],
)
def test_reassemble_matches_loop(k, s, groups, mode, chunk) -> None:
    g = torch.Generator().manual_seed(k * 10 + s)
    x = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64)
    kernels = torch.randn(2, groups * k * k, 3 * s, 5 * s, generator=g, dtype=torch.float64)
    kwargs = {"groups": groups, "padding_mode": mode}
    if chunk is not None:
        kwargs["chunk_elements"] = chunk
    out = reassemble(x, kernels, k, s, **kwargs)
    torch.testing.assert_close(out, _loop(x, kernels, k, s, groups, mode), rtol=1e-12, atol=1e-12)
    naive = reassemble_naive(x, kernels, k, s, groups=groups, padding_mode=mode)
    torch.testing.assert_close(naive, out, rtol=1e-12, atol=1e-12)


def test_reassemble_gradcheck() -> None:
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    kernels = torch.randn(1, 9, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: reassemble(a, b, 3, 2, chunk_elements=40), (x, kernels))


def test_reassemble_shape_errors() -> None:
    with pytest.raises(ValueError, match="kernels must be"):
        reassemble(torch.randn(1, 2, 3, 3), torch.randn(1, 9, 5, 6), 3, 2)
    with pytest.raises(ValueError, match="not divisible by groups"):
        reassemble(torch.randn(1, 3, 3, 3), torch.randn(1, 18, 6, 6), 3, 2, groups=2)
