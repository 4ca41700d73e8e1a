"""Segmentation models: shapes, guide wiring, presets, parameter groups, errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import upbench
from upbench.architectures import PROTOCOL_SCALES, SegmentationModel, build_model
from upbench.errors import ConfigError

K = 5


pytestmark = pytest.mark.usefixtures("one_thread")


SETTINGS = [
    ("plain", {"scale": 4}),
    ("plain", {"scale": 8}),
    ("plain", {"scale": 16}),
    ("hierarchical", {"protocol": "jump"}),
    ("hierarchical", {"protocol": "cascade"}),
]


def _capture(model: SegmentationModel) -> list[tuple[int, tuple[int, ...], tuple[int, ...] | None]]:
    """Record (scale, x shape, guide shape) of every operator call."""
    calls: list[tuple[int, tuple[int, ...], tuple[int, ...] | None]] = []

    def hook(module: torch.nn.Module, args: tuple[Tensor, ...]) -> None:
        x, guide = args
        calls.append((module.scale, tuple(x.shape), None if guide is None else tuple(guide.shape)))

    for op in model.upsamplers():
        op.register_forward_pre_hook(hook)
    return calls


@pytest.mark.parametrize("operator", ["bilinear", "resfu"])
@pytest.mark.parametrize(("architecture", "kw"), SETTINGS)
def test_output_shapes(architecture: str, kw: dict, operator: str) -> None:
    torch.manual_seed(0)
    model = build_model(architecture, operator=operator, num_classes=K, **kw)
    images = torch.randn(2, 3, 64, 48)
    logits, features = model(images, return_features=True)
    assert logits.shape == (2, K, 64, 48)
    assert torch.isfinite(logits).all()
    up = features["upsampled"]
    if architecture == "plain":
        # padded to 64 x 48 (multiple of 16); the operator output is at stride 16 / scale
        stride = 16 // kw["scale"]
        assert up.shape == (2, 64, 64 // stride, 48 // stride)
    else:
        # padded to 64 x 64 (multiple of 32): the deepest stage brought to stride 4
        assert up.shape == (2, 32, 16, 16)
    logits.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "every parameter must take part in the forward pass"


def test_sizes_not_multiple_of_the_stride() -> None:
    model = build_model("hierarchical", operator="bilinear", num_classes=K).eval()
    images = torch.randn(1, 3, 70, 45)
    assert model(images).shape == (1, K, 70, 45)
    # the padded part is cropped off: the visible logits only depend on the image itself
    with torch.no_grad():
        a = model(images)
        b = model(torch.nn.functional.pad(images, (0, 19, 0, 26)))[..., :70, :45]
    torch.testing.assert_close(a, b)


def test_guide_wiring_plain() -> None:
    for scale, stride in ((4, 4), (8, 2), (16, 1)):
        model = build_model("plain", operator="resfu", num_classes=K, scale=scale)
        calls = _capture(model)
        model(torch.randn(1, 3, 64, 32))
        assert calls == [(scale, (1, 64, 4, 2), (1, 32, 64 // stride, 32 // stride))]
    # unguided operators: no image stem is built, and the operator gets no guide
    model = build_model("plain", operator="bilinear", num_classes=K, scale=4)
    assert model.head.stem is None
    calls = _capture(model)
    model(torch.randn(1, 3, 64, 32))
    assert calls == [(4, (1, 64, 4, 2), None)]


def test_guide_wiring_hierarchical() -> None:
    e = 32  # embed_dim of the tiny preset
    model = build_model("hierarchical", operator="resfu", num_classes=K, protocol="jump")
    calls = _capture(model)
    model(torch.randn(1, 3, 64, 128))
    c1 = (1, e, 16, 32)
    assert calls == [(2, (1, e, 8, 16), c1), (4, (1, e, 4, 8), c1), (8, (1, e, 2, 4), c1)]

    model = build_model("hierarchical", operator="resfu", num_classes=K, protocol="cascade")
    calls = _capture(model)
    model(torch.randn(1, 3, 64, 128))
    sizes = {1: (16, 32), 2: (8, 16), 3: (4, 8), 4: (2, 4)}  # c1 .. c4
    expected = []
    for stage in (2, 3, 4):
        for level in range(stage - 1, 0, -1):  # guided by c_{stage-1}, ..., c1
            expected.append((2, (1, e, *sizes[level + 1]), (1, e, *sizes[level])))
    assert len(calls) == 6
    assert sorted(calls) == sorted(expected)
    # unguided operators get the projected stage anyway and ignore it
    model = build_model("hierarchical", operator="bilinear", num_classes=K, protocol="jump")
    calls = _capture(model)
    model(torch.randn(1, 3, 64, 64))
    assert [c[2] for c in calls] == [(1, e, 16, 16)] * 3


def test_model_attributes() -> None:
    m = build_model("plain", operator="bilinear", num_classes=K, scale=16)
    assert (m.architecture, m.protocol, m.scale, m.preset, m.operator) == (
        "plain",
        "direct",
        16,
        "tiny",
        "bilinear",
    )
    for protocol, scale in PROTOCOL_SCALES.items():
        m = build_model("hierarchical", operator="nearest", num_classes=K, protocol=protocol, scale=scale)
        assert (m.protocol, m.scale) == (protocol, scale)
        assert len(m.upsamplers()) == (3 if protocol == "jump" else 6)


@pytest.mark.parametrize(
    ("architecture", "preset", "encoder_params"),
    [("hierarchical", "b0", 3_319_392), ("hierarchical", "b1", 13_151_424), ("plain", "vit_s", 21_983_616)],
)
def test_large_presets_by_parameter_count(architecture: str, preset: str, encoder_params: int) -> None:
    # SegFormer reports 3.3 M / 13.2 M parameters for the MiT-B0 / B1 encoders; ViT-S/16 has
    # 21.7 M without the head (ours and mmseg at 512 px: position embedding on a 32 x 32 grid + class token)
    model = build_model(architecture, operator="bilinear", num_classes=150, preset=preset)
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder_params


def test_operator_options_are_passed() -> None:
    model = build_model("plain", operator="carafe", num_classes=K, operator_options={"up_kernel": 3})
    assert model.upsamplers()[0].up_kernel == 3
    jump = build_model("hierarchical", operator="carafe", num_classes=K, operator_options={"up_kernel": 3})
    assert [op.up_kernel for op in jump.upsamplers()] == [3, 3, 3]
    with pytest.raises(upbench.InvalidOptionError, match="up_kernel"):
        build_model("plain", operator="carafe", num_classes=K, operator_options={"bogus": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"architecture": "unet"}, "unknown architecture 'unet'; choose from hierarchical, plain"),
        ({"architecture": "plain", "preset": "b1"}, "no preset 'b1'; choose from tiny, vit_s, vit_b"),
        ({"architecture": "hierarchical", "preset": "vit_s"}, "choose from tiny, b0, b1, b2, b3, b4, b5"),
        ({"architecture": "hierarchical", "protocol": "direct"}, "choose from jump, cascade"),
        ({"architecture": "hierarchical", "protocol": "jump", "scale": 4}, "fixed largest step x8"),
        ({"architecture": "plain", "scale": 2}, "supports scale 4, 8, 16"),
        ({"architecture": "plain", "protocol": "jump"}, "only the 'direct' protocol"),
        ({"architecture": "plain", "num_classes": 0}, "num_classes must be a positive integer"),
    ],
)
def test_config_errors(kwargs: dict, message: str) -> None:
    kwargs = {"operator": "bilinear", "num_classes": K, **kwargs}
    with pytest.raises(ConfigError, match=message):
        build_model(kwargs.pop("architecture"), **kwargs)


def test_unknown_operator() -> None:
    with pytest.raises(upbench.UnknownOperatorError, match="Available"):
        build_model("plain", operator="nope", num_classes=K)


def test_param_groups_honour_param_lr_mult() -> None:
    model = build_model("plain", operator="resfu", num_classes=K, operator_options={"param_lr_mult": 500.0})
    groups = model.param_groups(1e-3, 0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)
    op = model.upsamplers()[0]
    boosted = {id(p) for g in op.param_groups() if g["lr_mult"] == 500.0 for p in g["params"]}
    assert boosted
    for g in groups:
        for p in g["params"]:
            assert g["lr_mult"] == (500.0 if id(p) in boosted else 1.0)
        assert g["lr"] == pytest.approx(1e-3 * g["lr_mult"])
        # biases, norms and the position embedding get no weight decay
        assert g["weight_decay"] == (0.0 if g["name"].endswith("no_decay") else 0.05)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(model.encoder.pos_embed) in no_decay
    assert id(model.head.classifier.weight) not in no_decay
    # torch optimizers accept the groups as they are
    torch.optim.AdamW(groups)


def test_param_groups_hierarchical_cover_all_operators() -> None:
    model = build_model(
        "hierarchical",
        operator="resfu",
        num_classes=K,
        protocol="cascade",
        operator_options={"param_lr_mult": 10.0},
    )
    groups = model.param_groups(1.0, 0.0)
    names = {g["name"].split(".")[0] for g in groups if g["lr_mult"] == 10.0}
    assert names == {f"operator{i}" for i in range(6)}


def test_tiny_images_are_padded_to_two_cells() -> None:
    # a 32 px image has a 1 x 1 stage 4; padding to 64 px keeps GroupNorm-based operators working
    model = build_model("hierarchical", operator="resfu", num_classes=K).eval()
    calls = _capture(model)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 40)).shape == (1, K, 32, 40)
    assert calls[-1][1] == (1, 32, 2, 2)


def test_timm_presets() -> None:
    from upbench.architectures.timm_backbone import timm_available

    with pytest.raises(ConfigError, match="hierarchical architecture only"):
        build_model("plain", operator="bilinear", num_classes=K, preset="timm:vit_small_patch16_224")
    if not timm_available():
        with pytest.raises(ConfigError, match="needs timm, which is not installed"):
            build_model("hierarchical", operator="bilinear", num_classes=K, preset="timm:resnet18")
        return
    model = build_model("hierarchical", operator="bilinear", num_classes=K, preset="timm:resnet18")
    assert model.encoder.dims == (64, 128, 256, 512)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, K, 64, 64)
    with pytest.raises(ConfigError, match="timm cannot build"):
        build_model("hierarchical", operator="bilinear", num_classes=K, preset="timm:no_such_model")
