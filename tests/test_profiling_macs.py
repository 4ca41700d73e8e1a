"""MAC counting: every upbench handle against a hand formula, fvcore's conv/matmul against
torch.utils.flop_counter, and no unsupported op in any built-in operator or model."""

from __future__ import annotations

import math
import subprocess
import sys
import typing

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import upbench
from upbench.errors import UpbenchError
from upbench.profiling import count_macs
from upbench.profiling.handles import HANDLES, einsum_macs
from upbench.registry import get_operator


class Fn(nn.Module):
    """Wraps a function of the inputs so fvcore can trace it."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def macs(fn, *inputs):
    return count_macs(Fn(fn), tuple(inputs))


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


N = math.prod

# (id, function, inputs, expected MACs, op name in by_operator or None if it counts 0)
CASES = [
    ("mul_broadcast", lambda a, b: a * b, (r(2, 3, 4, 5), r(1, 3, 1, 5)), N((2, 3, 4, 5)), "mul"),
    ("add", lambda a, b: a + b, (r(2, 3, 4), r(2, 3, 4)), 24, "add"),
    ("sub", lambda a, b: a - b, (r(3, 4), r(4)), 12, "sub"),
    ("rsub_scalar", lambda a: 1 - a, (r(5, 6),), 30, "rsub"),
    ("div", lambda a, b: a / b, (r(2, 7), r(2, 1)), 14, "div"),
    ("exp", torch.exp, (r(3, 5),), 15, "exp"),
    ("sigmoid", torch.sigmoid, (r(4, 4),), 16, "sigmoid"),
    ("relu", F.relu, (r(2, 9),), 18, "relu"),
    ("gelu", F.gelu, (r(3, 3),), 9, "gelu"),
    ("tanh", torch.tanh, (r(6),), 6, "tanh"),
    ("sum_dim", lambda a: a.sum(dim=1), (r(2, 5, 3),), 30, "sum"),
    ("mean", lambda a: a.mean(dim=(2, 3)), (r(1, 4, 3, 3),), 36, "mean"),
    ("softmax", lambda a: a.softmax(dim=1), (r(2, 9, 4),), 4 * 72, "softmax"),
    ("int_mul_is_free", lambda a: a.long() * 3, (r(4, 4),), 0, None),
    ("unfold_im2col", lambda a: F.unfold(a, 3, padding=1), (r(1, 2, 5, 5),), 0, None),
    ("tensor_unfold", lambda a: a.unfold(2, 3, 1), (r(1, 2, 5, 5),), 0, None),
    ("pixel_shuffle", lambda a: F.pixel_shuffle(a, 2), (r(1, 8, 3, 3),), 0, None),
    ("pad_zeros", lambda a: F.pad(a, (1, 1, 1, 1)), (r(1, 2, 3, 3),), 0, None),
    ("pad_replicate", lambda a: F.pad(a, (1, 1, 1, 1), mode="replicate"), (r(1, 2, 3, 3),), 0, None),
    ("repeat_interleave", lambda a: a.repeat_interleave(2, dim=1), (r(1, 2, 3),), 0, None),
    ("max_pool", lambda a: F.max_pool2d(a, 2), (r(1, 2, 4, 4),), 0, None),
    ("avg_pool_k3_s2", lambda a: F.avg_pool2d(a, 3, stride=2), (r(1, 2, 7, 7),), 9 * 2 * 3 * 3, "avg_pool2d"),
    ("adaptive_avg_pool", lambda a: F.adaptive_avg_pool2d(a, 1), (r(1, 3, 4, 4),), 48, "adaptive_avg_pool2d"),
    ("nearest_x2", lambda a: F.interpolate(a, scale_factor=2, mode="nearest"), (r(1, 3, 4, 4),), 192, None),
    (
        "bilinear_x2",
        lambda a: F.interpolate(a, scale_factor=2, mode="bilinear"),
        (r(1, 3, 4, 4),),
        4 * 192,
        None,
    ),
    (
        "bicubic_x2",
        lambda a: F.interpolate(a, scale_factor=2, mode="bicubic"),
        (r(1, 3, 4, 4),),
        16 * 192,
        None,
    ),
    (
        "bilinear_antialias_up",
        lambda a: F.interpolate(a, scale_factor=2, mode="bilinear", antialias=True),
        (r(1, 2, 4, 4),),
        2 * (4 * 8 * 2 + 8 * 8 * 2),
        None,
    ),
    (
        "bilinear_antialias_down",
        lambda a: F.interpolate(a, size=(2, 3), mode="bilinear", antialias=True),
        (r(1, 2, 8, 6),),
        2 * (8 * 3 * 4 + 2 * 3 * 8),
        None,
    ),
    ("group_norm_affine", nn.GroupNorm(2, 4), (r(1, 4, 3, 3),), 5 * 36, "group_norm"),
    ("layer_norm_affine", nn.LayerNorm(6), (r(2, 3, 6),), 5 * 36, "layer_norm"),
    (
        "einsum_pair",
        lambda a, b: torch.einsum("nchw,nkhw->nckw", a, b),
        (r(1, 3, 4, 5), r(1, 2, 4, 5)),
        120,
        "einsum",
    ),
    (
        "einsum_chain_optimal",
        lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c),
        (r(2, 3), r(3, 4), r(4, 5)),
        2 * 3 * 4 + 2 * 4 * 5,  # (ab)c; a(bc) would cost 3*4*5 + 2*3*5 = 90
        "einsum",
    ),
    (
        "baddbmm",
        lambda m, a, b: torch.baddbmm(m, a, b),
        (r(2, 3, 5), r(2, 3, 4), r(2, 4, 5)),
        2 * 3 * 4 * 5 + 30,
        "baddbmm",
    ),
]


CASE_IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("fn", "inputs", "expected", "key"), [c[1:] for c in CASES], ids=CASE_IDS)
def test_handle_matches_hand_formula(fn, inputs, expected, key) -> None:
    count = macs(fn, *inputs)
    assert count.unsupported == {}
    assert count.total == expected
    if key is not None:
        assert count.by_operator.get(key) == expected


@pytest.mark.parametrize(("mode", "per_output"), [("bilinear", 4), ("nearest", 1), ("bicubic", 16)])
def test_grid_sample_reads_its_mode(mode: str, per_output: int) -> None:
    x, grid = r(2, 3, 5, 5), torch.rand(2, 4, 6, 2) * 2 - 1
    count = macs(lambda a, g: F.grid_sample(a, g, mode=mode, align_corners=False), x, grid)
    assert count.unsupported == {}
    assert count.total == per_output * 2 * 3 * 4 * 6


def test_sdpa_counts_matmuls_scale_and_softmax() -> None:
    b, h, length, source, e, ev = 2, 3, 5, 7, 4, 6
    q, k, v = r(b, h, length, e), r(b, h, source, e), r(b, h, source, ev)
    count = macs(F.scaled_dot_product_attention, q, k, v)
    scores = b * h * length * source
    assert count.unsupported == {}
    assert count.total == scores * (e + ev) + 5 * scores
    with FlopCounterMode(display=False) as fc:  # torch counts the two matmuls only, as FLOPs
        F.scaled_dot_product_attention(q, k, v)
    assert count.total - 5 * scores == fc.get_total_flops() // 2


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.Conv2d(4, 6, 3, padding=1, bias=False), (2, 4, 5, 5)),
        (nn.Conv2d(4, 8, 3, stride=2, groups=2), (1, 4, 9, 7)),
        (nn.ConvTranspose2d(4, 3, 2, stride=2), (1, 4, 5, 5)),
        (nn.Linear(7, 5), (3, 4, 7)),
    ],
    ids=["conv3x3", "conv_grouped_strided", "deconv", "linear"],
)
def test_conv_and_linear_agree_with_flop_counter(module: nn.Module, shape: tuple[int, ...]) -> None:
    x = r(*shape)
    with FlopCounterMode(display=False) as fc:
        module(x)
    count = count_macs(module, (x,))
    assert count.unsupported == {}
    assert count.total > 0
    assert 2 * count.total == fc.get_total_flops()


@pytest.mark.parametrize(
    ("fn", "shapes"),
    [(torch.matmul, ((3, 4, 5), (5, 6))), (torch.bmm, ((2, 3, 4), (2, 4, 5))), (torch.mm, ((3, 4), (4, 2)))],
    ids=["matmul", "bmm", "mm"],
)
def test_matmuls_agree_with_flop_counter(fn, shapes) -> None:
    inputs = [r(*s) for s in shapes]
    with FlopCounterMode(display=False) as fc:
        fn(*inputs)
    count = macs(fn, *inputs)
    assert count.unsupported == {}
    assert count.total > 0
    assert 2 * count.total == fc.get_total_flops()


def test_einsum_macs_single_operand_and_errors() -> None:
    assert einsum_macs("ij->i", [[3, 4]]) == 12
    assert einsum_macs("ij->ij", [[3, 4]]) == 0
    with pytest.raises(ValueError, match="explicit"):
        einsum_macs("ij,jk", [[2, 3], [3, 4]])
    with pytest.raises(ValueError, match="does not match"):
        einsum_macs("ij,jk->ik", [[2, 3, 1], [3, 4]])


def test_kwargs_and_dict_outputs_are_traced() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1, bias=False)

        def forward(self, x, double: bool = False):
            y = self.conv(x)
            return {"out": y * 2 if double else y, "aux": [x]}

    x = r(1, 2, 4, 4)
    plain = count_macs(Model(), (x,))
    doubled = count_macs(Model(), (x,), {"double": True})
    assert plain.total == 2 * 3 * 16
    assert doubled.total == plain.total + 3 * 16
    assert doubled.by_operator["mul"] == 48
    assert math.isclose(doubled.gmacs, doubled.total / 1e9)


def test_unhandled_op_is_reported_and_extra_handles_fix_it() -> None:
    fn = torch.cosh  # deliberately not in upbench's table
    assert "aten::cosh" not in HANDLES
    x = r(3, 4)
    assert macs(fn, x).unsupported == {"aten::cosh": 1}
    fixed = count_macs(Fn(fn), (x,), extra_handles={"aten::cosh": lambda inputs, outputs: 7})
    assert fixed.unsupported == {}
    assert fixed.total == 7


def _small_scales(name: str) -> list[int]:
    info = upbench.operator_info(name)
    return [s for s in (2, 4) if info.supports_scale(s)][:2]


@pytest.mark.parametrize("name", upbench.list_operators())
def test_every_builtin_operator_is_fully_counted(name: str) -> None:
    info = upbench.operator_info(name)
    scales = _small_scales(name)
    assert scales, f"{name} supports neither scale 2 nor 4"
    for scale in scales:
        op = upbench.create_operator(name, 8, scale, guide_channels=4 if info.guided else None).eval()
        x = r(1, 8, 5, 5)
        guide = r(1, 4, 5 * scale, 5 * scale) if info.guided else None
        count = count_macs(op, (x, guide))
        assert count.unsupported == {}, f"{name} x{scale}: fvcore counted these ops as 0: {count.unsupported}"
        assert count.total == sum(count.by_operator.values())
        if name != "nearest":  # nearest copies; every other operator does arithmetic
            assert count.total > 0


def _option_variants() -> list[tuple[str, dict]]:
    """(operator, {option: non-default value}) for every bool and Literal option of every operator."""
    variants = []
    for name in upbench.list_operators():
        cls = get_operator(name)
        hints = typing.get_type_hints(cls.__init__)
        for key, default in cls.info.options.items():
            hint = hints.get(key)
            values = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else ()
            if hint is bool:
                values = (not default,)
            variants += [(name, {key: v}) for v in values if v != default]
    return variants


OPTION_VARIANTS = _option_variants()


@pytest.mark.parametrize(("name", "options"), OPTION_VARIANTS, ids=[f"{n}-{o}" for n, o in OPTION_VARIANTS])
def test_operator_option_variants_are_fully_counted(name: str, options: dict) -> None:
    info = upbench.operator_info(name)
    scale = _small_scales(name)[0]
    guide_channels = 4 if info.guided else None
    try:
        op = upbench.create_operator(name, 8, scale, guide_channels=guide_channels, **options)
    except UpbenchError as exc:  # e.g. ReSFU y_conv=False: the guide is the query, so C_g = embedding_dim
        guide_channels = info.options.get("embedding_dim")
        if not info.guided or guide_channels is None:
            pytest.skip(f"{name} rejects {options} on its own: {exc}")
        op = upbench.create_operator(name, 8, scale, guide_channels=guide_channels, **options)
    guide = r(1, guide_channels, 4 * scale, 4 * scale) if info.guided else None
    count = count_macs(op.eval(), (r(1, 8, 4, 4), guide))
    assert count.unsupported == {}, f"{name} {options}: fvcore counted these ops as 0: {count.unsupported}"


def _model_variants() -> list[tuple[str, dict]]:
    try:
        from upbench.architectures import ARCHITECTURES, PLAIN_SCALES, PROTOCOL_SCALES
    except ImportError:
        return []
    variants: list[tuple[str, dict]] = []
    for arch in ARCHITECTURES:
        if arch == "plain":
            variants += [(arch, {"scale": s}) for s in (min(PLAIN_SCALES), max(PLAIN_SCALES))]
        elif arch == "probe":  # frozen ViT + operator to full resolution + 1x1 probe
            variants += [(arch, {"protocol": "trained"})]
        else:
            variants += [(arch, {"protocol": p}) for p in PROTOCOL_SCALES]
    return variants


@pytest.mark.parametrize("operator", ["bilinear", "resfu"])  # resfu: a guided operator with its guide path
def test_models_are_fully_counted(operator: str) -> None:
    variants = _model_variants()
    if not variants:
        pytest.skip("upbench.architectures.build_model is not available")
    if operator not in upbench.list_operators():
        pytest.skip(f"operator {operator} is not registered")
    from upbench.architectures import build_model

    if operator != "bilinear":  # the guide path: one variant per architecture keeps the test fast
        variants = [v for i, v in enumerate(variants) if all(v[0] != w[0] for w in variants[:i])]
    for arch, kw in variants:
        model = build_model(arch, operator=operator, num_classes=3, preset="tiny", **kw).eval()
        count = count_macs(model, (r(1, 3, 32, 32),))
        assert count.unsupported == {}, f"{arch} {kw} with {operator}: ops counted as 0: {count.unsupported}"
        assert count.total > 0


def test_fvcore_is_lazy_and_its_deprecation_warnings_do_not_break_strict_runs() -> None:
    code = (
        "import sys, torch\n"
        "import upbench.profiling as p\n"
        "assert 'fvcore' not in sys.modules, 'fvcore imported eagerly'\n"
        "count = p.count_macs(torch.nn.Linear(2, 3), (torch.randn(1, 2),))\n"
        "assert count.total == 6 and 'fvcore' in sys.modules\n"
    )
    command = [sys.executable, "-W", "error::DeprecationWarning", "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
