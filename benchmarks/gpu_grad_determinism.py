"""Eager vs eager vs CUDA-graph gradients of ReSFU per aggregation, TF32 on and off (GPU only).

Why tests/test_cuda_checks.py scales its tolerance: the backward accumulates with float32 atomics,
so two eager runs already differ. Run: ``python benchmarks/gpu_grad_determinism.py`` (one CUDA GPU).
"""

from __future__ import annotations

import sys

import torch

import upbench
from upbench.profiling.runners import forward_backward_fn


def gradients(name: str, aggregation: str, graphed: bool, tf32: bool, c: int = 16, s: int = 4) -> list[torch.Tensor]:
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(0)
    op = upbench.create_operator(name, c, s, guide_channels=c, aggregation=aggregation).cuda()
    x = torch.randn(2, c, 8, 8, generator=torch.Generator().manual_seed(0)).cuda().requires_grad_()
    guide = torch.randn(2, c, 8 * s, 8 * s, generator=torch.Generator().manual_seed(1)).cuda()
    torch.cuda.manual_seed(123)
    forward_backward_fn(op, (x, guide), module=op, cuda_graph=graphed)()
    return [x.grad.clone()] + [p.grad.clone() for p in op.parameters()]


def largest_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((u - v).abs().max().item() for u, v in zip(a, b))


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_grad_determinism: no CUDA device on this machine", file=sys.stderr)
        return 2
    for aggregation in ("triton", "chunked"):
        for tf32 in (True, False):
            ref = gradients("resfu", aggregation, False, tf32)
            again = gradients("resfu", aggregation, False, tf32)
            graph = gradients("resfu", aggregation, True, tf32)
            scale = max(t.abs().max().item() for t in ref)
            print(
                f"resfu aggregation={aggregation:8s} tf32={tf32!s:5s} max|grad|={scale:.3e} "
                f"eager-vs-eager={largest_difference(ref, again):.2e} "
                f"eager-vs-graph={largest_difference(ref, graph):.2e}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
