"""The official training semantics: ReSFU's lr_mult, mmseg paramwise_cfg, accumulation, poly begin."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from upbench.architectures import build_model
from upbench.architectures.paramwise import official_names, sorted_custom_keys
from upbench.errors import ConfigError
from upbench.training import PolyWarmup, TrainConfig, build_optimizer, train

K = 3
pytestmark = pytest.mark.usefixtures("one_thread")

# mmseg SegFormer config (zmhhmz/ReSFU@62e9d9c mmsegmentation/configs/segformer/
# segformer_mit-b0_8xb2-160k_ade20k-512x512.py, base of the B1 and B1-ReSFU configs)
SEGFORMER_KEYS = {"pos_block": {"decay_mult": 0.0}, "norm": {"decay_mult": 0.0}, "head": {"lr_mult": 10.0}}


def _pcdc_ids(model: nn.Module) -> set[int]:
    return {id(p) for op in model.upsamplers() for m in (op.semantic_scores, op.detail_scores) for p in m.parameters()}


def _steps(options: dict, optimizer: str, weight_decay: float, steps: int = 3) -> tuple[nn.Module, nn.Module]:
    """(initial model, model after ``steps`` optimizer steps) with ReSFU ``options``."""
    torch.manual_seed(0)
    model = build_model("plain", operator="resfu", num_classes=K, operator_options=options)
    start = build_model("plain", operator="resfu", num_classes=K)
    start.load_state_dict(model.state_dict())
    cfg = TrainConfig(optimizer=optimizer, lr=1e-3, weight_decay=weight_decay, momentum=0.9, iters=steps)
    opt = build_optimizer(model, cfg)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 32, 32, generator=g), torch.randint(0, K, (2, 32, 32), generator=g)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return start, model


def _pcdc_delta(start: nn.Module, end: nn.Module) -> torch.Tensor:
    ids = _pcdc_ids(end)
    a = [p for p in start.parameters()]
    return torch.cat([(q - p).flatten() for p, q in zip(a, end.parameters(), strict=True) if id(q) in ids])


def test_lr_mult_and_param_lr_mult_agree_under_sgd_without_weight_decay() -> None:
    # Segmenter-ReSFU trains with SGD lr 1e-3, momentum 0.9, weight decay 0: the official gradient
    # hook then equals a 500x learning rate on the PCDC blocks
    start, hooked = _steps({"lr_mult": 500.0}, "sgd", 0.0)
    _, grouped = _steps({"param_lr_mult": 500.0}, "sgd", 0.0)
    _, plain = _steps({}, "sgd", 0.0)
    for p, q in zip(hooked.parameters(), grouped.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert _pcdc_delta(start, hooked).abs().max() > 10 * _pcdc_delta(start, plain).abs().max()


def test_lr_mult_and_param_lr_mult_differ_under_adamw() -> None:
    # SegFormer-ReSFU trains with AdamW: Adam normalises the gradient scale away, so the official
    # hook barely changes the PCDC updates, while a param-group multiplier makes them 500x larger
    start, hooked = _steps({"lr_mult": 500.0}, "adamw", 0.01)
    _, grouped = _steps({"param_lr_mult": 500.0}, "adamw", 0.01)
    _, plain = _steps({}, "adamw", 0.01)
    d_hooked, d_grouped, d_plain = (_pcdc_delta(start, m) for m in (hooked, grouped, plain))
    # nearly a no-op: within a few % of the unmultiplied run (Adam's eps keeps it from being exact)
    assert (d_hooked - d_plain).norm() < 0.1 * d_plain.norm()
    ratio = d_grouped.abs().max() / d_hooked.abs().max()
    assert 100 < ratio <= 500 * 1.01


def test_custom_keys_follow_mmengine_order_and_mmseg_names() -> None:
    assert sorted_custom_keys(SEGFORMER_KEYS) == ["pos_block", "head", "norm"]
    model = build_model("hierarchical", operator="resfu", num_classes=K, operator_options={"lr_mult": 500.0})
    names = official_names(model)
    # mmseg names from tools/model_converters/mit2mmseg.py: stage norm = layers.{i}.2, block norm1
    assert names["encoder.stages.0.norm.weight"] == "backbone.layers.0.2.weight"
    assert names["encoder.stages.1.blocks.0.norm1.weight"] == "backbone.layers.1.1.0.norm1.weight"
    assert names["encoder.stages.0.blocks.0.attn.q.weight"] == "backbone.layers.0.1.0.attn.attn.in_proj_weight"
    groups = model.param_groups(6e-5, 0.01, custom_keys=SEGFORMER_KEYS, auto_no_decay=False)
    by_param = {id(p): g for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert len(by_param) == len(params)
    for name, p in params.items():
        g = by_param[id(p)]
        official = names[name]
        if official.startswith("decode_head."):  # 'head' wins over 'norm' (same length, alphabetical)
            assert (g["lr"], g["weight_decay"]) == (pytest.approx(6e-4), 0.01), name
        elif "norm" in official:
            assert (g["lr"], g["weight_decay"]) == (pytest.approx(6e-5), 0.0), name
        else:  # biases and MiT's stage norms (layers.{i}.2) keep their decay in mmseg
            assert (g["lr"], g["weight_decay"]) == (pytest.approx(6e-5), 0.01), name
    # the upsamplers inside the decode head (and their GroupNorms) are covered by 'head'
    op_norm = next(n for n in params if n.startswith("head.") and "norm_x" in n)
    assert by_param[id(params[op_norm])]["lr"] == pytest.approx(6e-4)
    assert by_param[id(params["encoder.stages.3.norm.weight"])]["weight_decay"] == 0.01


def test_custom_keys_validation() -> None:
    with pytest.raises(ConfigError, match="unknown key 'lr'"):
        TrainConfig(custom_keys={"head": {"lr": 10.0}})
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        TrainConfig(custom_keys={"head": {"lr_mult": -1}})
    with pytest.raises(ConfigError, match="multiple of train.accumulate"):
        TrainConfig(batch_size=3, accumulate=2)
    with pytest.raises(ConfigError, match="poly_begin"):
        TrainConfig(iters=10, poly_begin=10)


def test_poly_begin_is_mmengine_linear_then_poly() -> None:
    # SegFormer: LinearLR(start_factor=1e-6, begin=0, end=1500) then PolyLR(power=1, eta_min=0,
    # begin=1500, end=160000)
    cfg = TrainConfig(iters=160000, warmup_iters=1500, warmup_ratio=1e-6, poly_begin=1500, min_lr=0.0)
    f = PolyWarmup(cfg)
    assert f(0) == pytest.approx(1e-6)
    assert f(750) == pytest.approx(1e-6 + (1 - 1e-6) * 0.5)
    assert f(1500) == pytest.approx(1.0)
    assert f(1500 + 158500 // 2) == pytest.approx(0.5)
    assert f(160000) == pytest.approx(0.0)


def _train_once(accumulate: int, batch: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=g)
    labels = torch.randint(0, K, (8, 32, 32), generator=g)  # no ignored pixels: chunk means average exactly
    torch.manual_seed(0)
    model = build_model("plain", operator="bilinear", num_classes=K, preset="tiny")
    cfg = TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.0, iters=3, batch_size=batch, accumulate=accumulate)
    train(model, TensorDataset(images, labels), cfg, progress=False)
    return model.state_dict()


def test_gradient_accumulation_equals_the_large_batch() -> None:
    torch.manual_seed(0)
    initial = build_model("plain", operator="bilinear", num_classes=K, preset="tiny").state_dict()
    large, accumulated = _train_once(1, 4), _train_once(4, 4)
    assert any(not torch.equal(large[k], initial[k]) for k in large)  # training moved the weights
    for k in large:
        torch.testing.assert_close(accumulated[k], large[k], rtol=1e-4, atol=1e-6)


def test_custom_keys_on_the_original_segformer_names_reach_the_stage_norms() -> None:
    # FADE/SAPA train with the NVlabs SegFormer code, where the stage norms are named norm{i}
    # (poppinace/fade@e4de4db segformer/segformer.b1_fade.512x512.ade.160k.py: same custom_keys)
    model = build_model("hierarchical", operator="bilinear", num_classes=K)
    assert official_names(model, "segformer")["encoder.stages.2.norm.bias"] == "backbone.norm3.bias"
    groups = model.param_groups(
        6e-5, 0.01, custom_keys=SEGFORMER_KEYS, custom_keys_names="segformer", auto_no_decay=False
    )
    stage_norm = model.encoder.stages[2]["norm"].bias
    assert next(g for g in groups if any(p is stage_norm for p in g["params"]))["weight_decay"] == 0.0
    with pytest.raises(ConfigError, match="custom_keys_names"):
        TrainConfig(custom_keys_names="timm")
