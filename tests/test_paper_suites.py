"""The paper presets: every value pinned against the official config it cites, and their pipelines.

Expected values are copied from the official files (read for this test):
- zmhhmz/ReSFU @ 62e9d9c, mmsegmentation/configs/: segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512_resfu.py,
  segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py,
  segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512_resfu.py,
  segmenter/segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py, _base_/models/segmenter_vit-b16_mask.py,
  _base_/schedules/schedule_160k.py, _base_/datasets/ade20k.py;
- poppinace/fade @ e4de4db, segformer/segformer.b1_fade.512x512.ade.160k.py (and its .log).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from upbench.architectures import build_model
from upbench.architectures.presets import MIT_PRESETS, VIT_PRESETS
from upbench.data import build_dataset
from upbench.suite import load_suite
from upbench.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

MMSEG_ADE_TRAIN = {"scale": [2048, 512], "ratio_range": [0.5, 2.0], "crop_size": 512, "cat_max_ratio": 0.75}
SEGFORMER_KEYS = {"pos_block": {"decay_mult": 0.0}, "norm": {"decay_mult": 0.0}, "head": {"lr_mult": 10.0}}


def _train(suite: str) -> dict:
    return load_suite(suite).config.train


def test_segformer_b1_resfu_preset_values() -> None:
    cfg = load_suite("paper_segformer_b1").config
    t = cfg.train
    # segformer_mit-b0_8xb2-160k_ade20k-512x512.py: AdamW(lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01)
    assert (t["optimizer"], t["lr"], tuple(t["betas"]), t["weight_decay"]) == ("adamw", 6e-5, (0.9, 0.999), 0.01)
    # LinearLR(start_factor=1e-6, begin=0, end=1500); PolyLR(eta_min=0.0, power=1.0, begin=1500, end=160000)
    assert (t["warmup_iters"], t["warmup_ratio"], t["poly_begin"], t["poly_power"], t["min_lr"]) == (
        1500,
        1e-6,
        1500,
        1.0,
        0.0,
    )
    assert t["iters"] == 160000 and t["batch_size"] == 2 * 8 and t["grad_clip"] == 0.0
    assert (t["custom_keys"], t["custom_keys_names"], t["auto_no_decay"]) == (SEGFORMER_KEYS, "mmseg", False)
    # segformer_mit-b1_8xb2-160k_ade20k-512x512_resfu.py: upsample_cfg=dict(type='resfu', guided=True, lr_mult=500.)
    assert cfg.options == {"resfu": {"lr_mult": 500.0}}
    assert cfg.operators == ["bilinear", "resfu"]
    (arch,) = cfg.architectures
    assert (arch.name, arch.preset, arch.protocols) == ("hierarchical", "b1", ["jump"])
    # embed_dims=64, num_heads=[1, 2, 5, 8], num_layers=[2, 2, 2, 2]
    b1 = MIT_PRESETS["b1"]
    assert (b1.dims, b1.heads, b1.depths, b1.embed_dim, b1.ln_eps) == (
        (64, 128, 320, 512),
        (1, 2, 5, 8),
        (2, 2, 2, 2),
        256,
        1e-6,
    )
    assert cfg.dataset.name == "ade20k" and cfg.dataset.train == MMSEG_ADE_TRAIN
    assert cfg.dataset.val == {"test_scale": [2048, 512]}
    assert cfg.eval.mode == "whole" and cfg.profile.image_size == 512


def test_segmenter_s_resfu_preset_values() -> None:
    cfg = load_suite("paper_segmenter_s").config
    t = cfg.train
    # segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py: optimizer=dict(lr=0.001, weight_decay=0.0) over
    # schedule_160k.py: SGD(momentum=0.9), PolyLR(eta_min=1e-4, power=0.9, begin=0, end=160000), no warm-up
    assert (t["optimizer"], t["lr"], t["momentum"], t["weight_decay"]) == ("sgd", 0.001, 0.9, 0.0)
    assert (t["poly_power"], t["min_lr"], t["warmup_iters"], t["iters"]) == (0.9, 1e-4, 0, 160000)
    assert t["batch_size"] == 1 * 8 and t.get("custom_keys", {}) == {}
    # segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512_resfu.py:
    # upsample_cfg=dict(type='resfu', scale_factor=4, lr_mult=500)
    assert cfg.options == {"resfu": {"lr_mult": 500.0}}
    (arch,) = cfg.architectures
    assert (arch.name, arch.preset, arch.scales) == ("plain", "vit_s", [4])
    # img_size=(512, 512), embed_dims=384, num_heads=6, 12 layers, LN eps=1e-6, interpolate_mode='bicubic'
    s = VIT_PRESETS["vit_s"]
    assert (s.img_size, s.dim, s.heads, s.depth, s.ln_eps, s.pos_interpolation) == (512, 384, 6, 12, 1e-6, "bicubic")
    # segmenter_vit-b16_mask.py: mean=std=[127.5] * 3;
    # test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(480, 480))
    stats = {"mean": [127.5] * 3, "std": [127.5] * 3}
    assert cfg.dataset.train == {**MMSEG_ADE_TRAIN, **stats}
    assert cfg.dataset.val == {"test_scale": [2048, 512], **stats}
    assert (cfg.eval.mode, cfg.eval.crop_size, cfg.eval.stride) == ("slide", 512, 480)


def test_segformer_b1_cascade_preset_values() -> None:
    cfg = load_suite("paper_segformer_b1_cascade").config
    t = cfg.train
    # optimizer = dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01, paramwise_cfg=...)
    assert (t["optimizer"], t["lr"], tuple(t["betas"]), t["weight_decay"]) == ("adamw", 6e-5, (0.9, 0.999), 0.01)
    assert (t["custom_keys"], t["custom_keys_names"], t["auto_no_decay"]) == (SEGFORMER_KEYS, "segformer", False)
    # lr_config = dict(policy='poly', warmup='linear', warmup_iters=1500, warmup_ratio=1e-6, power=1.0, min_lr=0.0)
    assert (t["warmup_iters"], t["warmup_ratio"], t["poly_begin"], t["poly_power"], t["min_lr"]) == (
        1500,
        1e-6,
        0,
        1.0,
        0.0,
    )
    # data = dict(samples_per_gpu=16) on one GPU; max_iters=160000
    assert (t["batch_size"], t["accumulate"], t["iters"]) == (16, 1, 160000)
    (arch,) = cfg.architectures
    assert (arch.name, arch.preset, arch.protocols) == ("hierarchical", "b1", ["cascade"])
    assert cfg.dataset.train == MMSEG_ADE_TRAIN and cfg.eval.mode == "whole"
    # MultiScaleFlipAug(img_scale=(2048, 512)) with AlignedResize(keep_ratio=True, size_divisor=32)
    assert cfg.dataset.val == {"test_scale": [2048, 512], "test_size_divisor": 32}


@pytest.mark.parametrize("suite", ["paper_segformer_b1", "paper_segmenter_s", "paper_segformer_b1_cascade"])
def test_paper_cells_build_their_train_config_and_model(suite: str) -> None:
    cells = load_suite(suite).cells()
    assert cells
    for cell in cells:
        TrainConfig(**cell.config["train"])  # every key is a valid training setting
    c = cells[-1].config
    model = build_model(
        c["architecture"],
        operator=c["operator"],
        num_classes=150,
        preset="tiny",
        protocol=None if c["architecture"] == "plain" else c["protocol"],
        scale=c["scale"] if c["architecture"] == "plain" else None,
        operator_options=c["options"],
    )
    assert model.upsamplers()


def test_pretrained_path_is_checked_and_enters_the_cell(tmp_path: Path, capsys) -> None:
    from test_pretrained import mit_to_mmseg, segformer_release

    from upbench.cli import main
    from upbench.errors import ConfigError

    with pytest.raises(ConfigError, match="model.pretrained: checkpoint file .* does not exist"):
        load_suite("paper_segformer_b1", overrides=[f"model.pretrained={tmp_path / 'nope.pth'}"])
    torch.save(mit_to_mmseg(segformer_release("tiny")), tmp_path / "mit_tiny.pth")
    tiny = ["architectures.0.preset=tiny"]
    plain = load_suite("paper_segformer_b1", overrides=tiny).cells()
    with_weights = load_suite("paper_segformer_b1", overrides=[*tiny, f"model.pretrained={tmp_path / 'mit_tiny.pth'}"])
    cells = with_weights.cells()
    assert cells[0].config["model"]["pretrained"].endswith("mit_tiny.pth")
    assert cells[0].cell_id != plain[0].cell_id
    # a checkpoint of another size is one clear line (exit code 2) at plan time, before any training
    assert main(["plan", "paper_segformer_b1", "--set", f"model.pretrained={tmp_path / 'mit_tiny.pth'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has shape (16, 3, 7, 7) but the MiT preset's" in err


# --------------------------------------------------------------------------- pipelines on a fixture
def test_aligned_resize_on_a_fixture(ade: Path) -> None:
    # the original SegFormer AlignedResize: mmcv rescale to fit (2048, 512), then a second bilinear
    # resize to the next multiples of 32: 48 x 64 -> 512 x 683 -> 512 x 704
    val = load_suite("paper_segformer_b1_cascade").config.dataset.val
    image, label = build_dataset("ade20k", split="val", root=ade, **val)[0]
    raw, _ = build_dataset("ade20k", split="val", root=ade, mean=[0, 0, 0], std=[1, 1, 1])[0]
    once = F.interpolate(raw[None], size=(512, 683), mode="bilinear", align_corners=False)
    twice = F.interpolate(once, size=(512, 704), mode="bilinear", align_corners=False)[0]
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    assert image.shape == (3, 512, 704) and label.shape == (48, 64)
    torch.testing.assert_close(image, (twice - mean) / std, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("suite", ["paper_segformer_b1", "paper_segmenter_s"])
def test_paper_pipelines_on_a_fixture(ade: Path, suite: str) -> None:
    ds_cfg = load_suite(suite).config.dataset
    train = build_dataset("ade20k", split="train", root=ade, augment_seed=0, **ds_cfg.train)
    for i in range(len(train)):
        image, label = train[i]
        assert image.shape == (3, 512, 512) and label.shape == (512, 512)  # crop 512 (padded if smaller)
    image, label = build_dataset("ade20k", split="val", root=ade, **ds_cfg.val)[0]
    # mmcv rescale to fit (2048, 512) keeping the ratio: 48 x 64 -> factor min(2048/64, 512/48)
    assert image.shape == (3, 512, 683) and label.shape == (48, 64)
    if suite == "paper_segmenter_s":  # (x - 127.5) / 127.5
        assert image.min() >= -1.0 and image.max() <= 1.0
    else:
        assert image.min() < -1.5  # ImageNet statistics: (0 - 123.675) / 58.395


def test_cat_max_ratio_statistics_on_a_fixture(ade: Path) -> None:
    # 48 x 64 label: class 0 in columns 0-55, class 1 in 56-63; 48 x 16 crops at a uniform left
    # offset in 0..48. A crop is balanced (max share < 0.75) only with >= 5 class-1 columns, i.e.
    # left in 45..48: p = 4/49. mmseg's RandomCrop checks 10 crops and keeps the 11th drawn if all
    # fail, so P(dominated) = (45/49)^11 = 0.392 with cat_max_ratio=0.75 and 45/49 = 0.918 without.
    def dominated_fraction(ratio: float, n: int = 300) -> float:
        ds = build_dataset(
            "ade20k", split="train", root=ade, scale=[64, 48], ratio_range=[1.0, 1.0], crop_size=[48, 16],
            cat_max_ratio=ratio,
        )  # fmt: skip
        hits = 0
        for seed in range(n):
            ds.augment_seed = seed
            _, label = ds[0]
            counts = torch.bincount(label[label != 255].flatten())
            hits += int(counts.max() / counts.sum() >= 0.75)
        return hits / n

    assert dominated_fraction(0.75) == pytest.approx((45 / 49) ** 11, abs=0.085)  # > 3 standard errors
    assert dominated_fraction(1.0) == pytest.approx(45 / 49, abs=0.06)


def test_larger_presets_match_the_mmseg_configs() -> None:
    # segformer_mit-b{2,3,4,5}_8xb2-160k_ade20k-512x512.py: embed_dims=64, num_heads=[1, 2, 5, 8],
    # num_layers as below; decode_head keeps channels=256 from the b0 base
    layers = {"b2": (3, 4, 6, 3), "b3": (3, 4, 18, 3), "b4": (3, 8, 27, 3), "b5": (3, 6, 40, 3)}
    for name, depths in layers.items():
        p = MIT_PRESETS[name]
        assert (p.dims, p.heads, p.depths, p.sr_ratios, p.embed_dim) == (
            (64, 128, 320, 512),
            (1, 2, 5, 8),
            depths,
            (8, 4, 2, 1),
            256,
        )
    # _base_/models/segmenter_vit-b16_mask.py: embed_dims=768, num_layers=12, num_heads=12, img_size 512
    b = VIT_PRESETS["vit_b"]
    assert (b.dim, b.depth, b.heads, b.img_size, b.ln_eps, b.pos_interpolation) == (768, 12, 12, 512, 1e-6, "bicubic")


def test_slide_windows_match_mmseg() -> None:
    from upbench.training.inference import window_starts

    # mmseg slide_inference: grids = max(size - crop + stride - 1, 0) // stride + 1, the last window
    # moved back inside the image. Cityscapes (segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py:
    # crop 1024, stride 768) on 1024 x 2048 images; Segmenter (crop 512, stride 480) on a 512 x 683 image
    assert window_starts(2048, 1024, 768) == [0, 768, 1024] and window_starts(1024, 1024, 768) == [0]
    assert window_starts(683, 512, 480) == [0, 171] and window_starts(512, 512, 480) == [0]
