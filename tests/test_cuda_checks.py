"""CUDA checks strong enough to catch real faults (they skip on machines without a GPU).

* AMP: the same model (no dropout or stochastic depth) and data trained in float32 and with
  autocast + gradient scaling give the first loss within 1 % and the loss after 12 steps within
  10 % (gradient scaling may skip an early step), and the AMP gradients point the same way as the
  float32 ones (cosine >= 0.99 for every parameter tensor whose gradient norm is at least 1e-3 of
  the largest).
* CUDA graphs: a captured forward+backward of operators with parameters (CARAFE, SAPA, ReSFU on
  the Triton aggregation, FADE and ReSFU on the chunked one) reproduces the eager parameter and
  input gradients, also after the inputs are overwritten in place between replays. TF32 is off, and
  the absolute tolerance is 1e-6 of the largest gradient of the step (over the input and all
  parameters): the backward accumulates with float32 atomics, so two *eager* runs of ReSFU already
  differ by up to 4.6e-5 where its largest gradient is 274 (measured on an H100 with
  benchmarks/gpu_grad_determinism.py: 1.7e-7 of the scale), and parameters whose exact gradient is
  ~0 carry that round-off too (4.8e-7 where their own largest value was 1.2e-6); a stale or wrong
  replay differs at the scale of the gradient itself.
* Timing: ``measure_latency``'s CUDA-event median agrees with the wall-clock median of
  synchronised calls within a ratio of 0.8 to 1.25 for a ~1 ms workload (launch overhead is tens
  of microseconds).
* The Triton kernels themselves are checked against float64 references in
  ``tests/test_triton_kernels.py``, which runs on the GPU when one is present.
"""

from __future__ import annotations

import math
import statistics
import time

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import upbench
from upbench.architectures import build_model
from upbench.architectures.layers import DropPath
from upbench.profiling import measure_latency
from upbench.profiling.runners import forward_backward_fn
from upbench.training import TrainConfig, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]

K = 3


def _dataset(n: int = 8, size: int = 64, seed: int = 0) -> TensorDataset:
    """Random images whose label is a thresholded smooth function of the image (learnable)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=g)
    smooth = nn.functional.avg_pool2d(images[:, :1], 5, 1, 2)[:, 0]
    return TensorDataset(images, (smooth > 0.1).long() + (smooth > 0.3).long())


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


def _deterministic_model(operator: str) -> nn.Module:
    """A tiny hierarchical model without stochastic depth or dropout (the two precisions see the same net)."""
    model = build_model("hierarchical", operator=operator, num_classes=K, dropout=0.0).cuda()
    for m in model.modules():
        if isinstance(m, DropPath):
            m.p = 0.0
    return model


@pytest.mark.parametrize("operator", ["resfu", "carafe", "sapa", "fade"])
def test_amp_training_matches_float32(operator: str) -> None:
    images, labels = _dataset().tensors
    images, labels = images[:2].cuda(), labels[:2].cuda()
    torch.manual_seed(0)
    reference = _deterministic_model(operator)
    grads = {}
    for amp in (False, True):
        model = _deterministic_model(operator)
        model.load_state_dict(reference.state_dict())
        model.eval()  # batch norm from its (initial) running statistics: the same function in both precisions
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            loss = nn.functional.cross_entropy(model(images), labels)
        (loss * 1024).backward()  # a fixed loss scale, as GradScaler's, keeps float16 gradients from underflowing
        grads[amp] = {n: p.grad.detach().float() for n, p in model.named_parameters() if p.grad is not None}
    largest = max(g.norm().item() for g in grads[False].values())
    for name, g32 in grads[False].items():
        if g32.norm() > 1e-3 * largest:  # smaller ones (e.g. biases before a norm, ~0 in theory) are rounding noise
            assert _cosine(grads[True][name], g32) >= 0.99, f"{operator}: AMP gradient of {name} diverges"

    histories = {}
    for amp in (False, True):
        model = _deterministic_model(operator)
        model.load_state_dict(reference.state_dict())
        result = train(model, _dataset(), TrainConfig(lr=1e-3, iters=12, batch_size=2, amp=amp, seed=1), progress=False)
        histories[amp] = [loss for _, loss in result.loss_history]
    first32, first16 = histories[False][0], histories[True][0]
    assert abs(first16 - first32) <= 0.01 * abs(first32), histories  # the same batch, before any update
    last32, last16 = histories[False][-1], histories[True][-1]
    assert math.isfinite(last16) and abs(last16 - last32) <= 0.10 * abs(last32), histories


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("carafe", {"aggregation": "triton"}),
        ("sapa", {"aggregation": "triton"}),
        ("resfu", {"aggregation": "triton"}),
        ("resfu", {"aggregation": "chunked"}),
        ("fade", {"aggregation": "chunked"}),
    ],
)
def test_cuda_graph_forward_backward_with_parameters(name: str, options: dict, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    c, s = 16, 4
    info = upbench.operator_info(name)
    torch.manual_seed(0)
    op = upbench.create_operator(name, c, s, guide_channels=c, **options).cuda()
    assert any(p.requires_grad for p in op.parameters())
    first_x, second_x = (torch.randn(2, c, 8, 8, generator=torch.Generator().manual_seed(i)).cuda() for i in (0, 1))
    x = first_x.clone().requires_grad_()
    inputs = (x, torch.randn(2, c, 8 * s, 8 * s, device="cuda")) if info.guided else (x,)

    def grads() -> list[torch.Tensor]:
        return [x.grad.clone()] + [p.grad.clone() for p in op.parameters()]

    results = {}
    for graphed in (False, True):
        with torch.no_grad():
            x.copy_(first_x)
        torch.cuda.manual_seed(123)  # the same fixed upstream gradient (drawn on the first call) in both
        step = forward_backward_fn(op, inputs, module=op, cuda_graph=graphed)
        step()
        first = grads()
        with torch.no_grad():
            x.copy_(second_x)  # new data in the (captured) input buffer
        step()
        results[graphed] = (first, grads())
    for eager, captured in zip(results[False], results[True]):
        scale = max(e.abs().max().item() for e in eager)  # the float32 round-off scale of this backward
        for e, g in zip(eager, captured):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6 * scale)
    assert not torch.equal(results[True][0][0], results[True][1][0])  # the replay did recompute


def test_cuda_event_timing_agrees_with_synchronised_wall_clock() -> None:
    a = torch.randn(4096, 4096, device="cuda")

    def work() -> torch.Tensor:
        return a @ a  # ~1 ms on current data-centre GPUs

    stats = measure_latency(work, device="cuda", warmup=5, iters=30)
    wall = []
    for _ in range(30):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        work()
        torch.cuda.synchronize()
        wall.append((time.perf_counter() - t0) * 1e3)
    ratio = stats.median_ms / statistics.median(wall)
    assert stats.method == "cuda_event"
    assert 0.8 <= ratio <= 1.25, f"CUDA events {stats.median_ms:.3f} ms vs wall clock {statistics.median(wall):.3f} ms"
