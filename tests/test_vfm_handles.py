"""MAC handles added for the task-agnostic upsamplers, against hand formulas; the cost suite validates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import upbench
from upbench.profiling import count_macs
from upbench.suite import load_suite


class Fn(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


CASES = [
    ("clamp", lambda a: a.clamp(-1, 1), (r(3, 4),), 12),
    ("clamp_max", lambda a: a.clamp_max(1), (r(2, 5),), 10),
    ("cos", torch.cos, (r(4, 4),), 16),
    ("sin", torch.sin, (r(2, 3),), 6),
    ("rms_norm_weight", nn.RMSNorm(6), (r(2, 3, 6),), 4 * 36),
    ("rms_norm_no_weight", nn.RMSNorm(6, elementwise_affine=False), (r(2, 3, 6),), 3 * 36),
    ("amin_is_free", lambda a: a.amin(dim=1), (r(3, 4),), 0),
    ("masked_fill_is_free", lambda a: a.masked_fill(a > 0, 0.0), (r(3, 4),), 0),
    ("index_select_is_free", lambda a: a.index_select(1, torch.tensor([0, 2])), (r(3, 4),), 0),
]


@pytest.mark.parametrize(("fn", "inputs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_handle_matches_hand_formula(fn, inputs, expected) -> None:
    module = fn if isinstance(fn, nn.Module) else Fn(fn)
    count = count_macs(module, inputs)
    assert count.unsupported == {}
    assert count.total == expected


def test_neighbourhood_attention_macs_are_the_two_matmuls_plus_softmax() -> None:
    from upbench_operators.naf import neighbourhood_attention

    b, n, d, dv, big_h, big_w, h, w, k = 1, 2, 4, 3, 6, 8, 3, 4, 3
    q, kk, v = r(b, n, d, big_h, big_w), r(b, n, d, h, w), r(b, n, dv, h, w)
    count = count_macs(Fn(lambda a, bb, c: neighbourhood_attention(a, bb, c, k, 0.5)), (q, kk, v))
    pixels = b * n * big_h * big_w
    assert count.unsupported == {}
    # scale, q.K over k rows x all w columns, softmax over k*k, weights @ V over k*w
    assert count.total == pixels * d + pixels * d * k * w + 4 * pixels * k * k + pixels * k * w * dv


def test_cost_suite_sweeps_ratio_channels_and_lr_size_for_every_operator() -> None:
    cells = load_suite("cost").cells()
    sizes = {(c.config["size"][1], c.config["size"][2]) for c in cells}  # (in_channels, lr_height)
    assert {(64, 16), (1024, 16), (384, 8), (384, 32)} <= sizes
    assert {c.config["scale"] for c in cells} == {2, 4, 8, 16}
    assert {c.config["operator"] for c in cells} == set(upbench.list_operators())
