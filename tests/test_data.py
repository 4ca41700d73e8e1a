"""upbench.data: the colour-coded generator, the registry and the transforms (no files needed)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from upbench.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    RandomResize,
    Resize,
    build_dataset,
    dataset_info,
    list_datasets,
)
from upbench.data._color import hsv_to_rgb, rgb_to_hsv
from upbench.data.colourcoded import BOX, DOT, RING, SPECKLE, WIRE
from upbench.data.transforms import rescale_size
from upbench.errors import ConfigError


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion of ``[N, H, W]`` by a ``(2r+1)`` square; outside the image counts as inside."""
    inverted = (~mask).float()[:, None]
    return F.max_pool2d(inverted, 2 * radius + 1, stride=1, padding=radius)[:, 0] == 0


@pytest.fixture(scope="module")
def synthetic() -> tuple[torch.Tensor, torch.Tensor]:
    ds = build_dataset("colourcoded", split="train", size=128, count=6)
    images, labels = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(images), torch.stack(labels)


# --------------------------------------------------------------------------- registry
def test_registry_lists_the_builtin_datasets() -> None:
    assert list_datasets() == ["ade20k", "cityscapes", "colourcoded", "contextual", "voc"]
    expected = {"colourcoded": 8, "contextual": 8, "ade20k": 150, "cityscapes": 19, "voc": 21}
    for name, k in expected.items():
        info = dataset_info(name)
        assert (info.name, info.num_classes, info.ignore_index, len(info.class_names)) == (name, k, 255, k)
    assert dataset_info("ade20k").class_names[:3] == ("wall", "building", "sky")
    assert dataset_info("ade20k").class_names[-1] == "flag"
    assert dataset_info("voc").class_names[0] == "background"
    assert dataset_info("cityscapes").class_names[-1] == "bicycle"
    assert "size" in dataset_info("colourcoded").options


def test_unknown_dataset_split_or_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'contextal'. Did you mean 'contextual'"):
        build_dataset("contextal", split="train")
    with pytest.raises(ConfigError, match="dataset 'synthetic': it is called 'colourcoded' now"):
        build_dataset("synthetic", split="train")
    with pytest.raises(ConfigError, match="no split 'test'"):
        build_dataset("colourcoded", split="test")
    with pytest.raises(ConfigError, match="unknown option.*'sise'.*accepted: size"):
        build_dataset("colourcoded", split="train", sise=64)
    with pytest.raises(ConfigError, match="takes no root"):
        build_dataset("colourcoded", split="train", root="/data")
    for bad in (8, 4096, "big", [64, 64, 3], 64.5):
        with pytest.raises(ConfigError, match="option size"):
            build_dataset("colourcoded", split="train", size=bad)
    with pytest.raises(ConfigError, match="option count"):
        build_dataset("colourcoded", split="train", count=0)
    with pytest.raises(ConfigError, match="option seed"):
        build_dataset("colourcoded", split="train", seed="0")
    with pytest.raises(ConfigError, match="option crop_size"):
        build_dataset("colourcoded", split="train", augment=True, crop_size=[32, 32, 3])


# --------------------------------------------------------------------------- synthetic
def test_synthetic_sample_contract(synthetic: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = synthetic
    assert images.shape == (6, 3, 128, 128) and images.dtype == torch.float32
    assert labels.shape == (6, 128, 128) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < 8
    # normalised with the ImageNet statistics: raw values in [0, 255] map into this range
    lo = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    hi = (255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.all(images.amin(dim=(0, 2, 3)) >= lo - 1e-5)
    assert torch.all(images.amax(dim=(0, 2, 3)) <= hi + 1e-5)
    assert images.std() > 0.3


def test_synthetic_has_many_classes_per_image(synthetic: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, labels = synthetic
    assert set(labels.unique().tolist()) == set(range(8))
    for label in labels:
        assert len(label.unique()) >= 6


def test_synthetic_thin_structures_vanish_under_erosion(synthetic: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, labels = synthetic
    for cls in (WIRE, RING):
        mask = labels == cls
        assert mask.sum() > 100
        # 1-3 px wide: a 3x3 erosion removes most pixels (1-2 px wide ones entirely), 5x5 all but junctions
        assert _erode(mask, 1).sum() < 0.5 * mask.sum()
        assert _erode(mask, 2).sum() <= 0.02 * mask.sum()
    small = (labels == DOT) | (labels == BOX)
    assert small.sum() > 50 and _erode(small, 4).sum() == 0  # small objects: under 9 px
    large = labels <= SPECKLE
    assert _erode(large, 2).sum() > 0.7 * large.sum()  # large regions survive


def test_synthetic_is_deterministic_and_order_independent() -> None:
    a = build_dataset("colourcoded", split="train", size=64, count=8, seed=3)
    b = build_dataset("colourcoded", split="train", size=64, count=8, seed=3)
    later = b[5]  # access out of order first
    first = b[0]
    for got, want in ((a[0], first), (a[5], later)):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    other_seed = build_dataset("colourcoded", split="train", size=64, count=8, seed=4)[0]
    val = build_dataset("colourcoded", split="val", size=64, count=8, seed=3)[0]
    assert not torch.equal(other_seed[1], first[1]) and not torch.equal(val[1], first[1])
    assert not torch.equal(a[1][1], a[0][1])
    assert len(build_dataset("colourcoded", split="val", size=64)) == 64
    with pytest.raises(IndexError):
        a[8]


def test_synthetic_is_the_same_through_dataloader_workers() -> None:
    ds = build_dataset("colourcoded", split="val", size=(48, 64), count=4)
    loaded = list(DataLoader(ds, batch_size=1, num_workers=2, shuffle=False))
    for i, (image, label) in enumerate(loaded):
        assert image.shape == (1, 3, 48, 64)
        assert torch.equal(image[0], ds[i][0]) and torch.equal(label[0], ds[i][1])


def test_synthetic_augmentation_is_seeded() -> None:
    def build(seed: int) -> object:
        return build_dataset(
            "colourcoded", split="train", size=64, count=2, augment=True, crop_size=48, augment_seed=seed
        )

    a, b, c = build(1), build(1), build(2)
    x, y = a[0]
    assert x.shape == (3, 48, 48) and y.shape == (48, 48)
    assert set(y.unique().tolist()) <= set(range(8)) | {255}
    assert torch.equal(a[0][0], b[0][0]) and not torch.equal(a[0][0], c[0][0])
    b.set_epoch(1)
    assert not torch.equal(a[0][0], b[0][0])
    torch.manual_seed(0)
    d = build_dataset("colourcoded", split="train", size=64, count=2, augment=True, crop_size=48)
    first = d[0][0]
    torch.manual_seed(0)
    assert torch.equal(d[0][0], first)  # augment_seed=None: governed by torch.manual_seed


# --------------------------------------------------------------------------- transforms
def _coded_pair(height: int = 40, width: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """An asymmetric label of blocks and an image whose three channels all equal ``10 * label``."""
    label = torch.zeros(height, width, dtype=torch.long)
    label[:, : width // 3] = 1
    label[: height // 2, width // 2 :] = 2
    label[height - 8 :, width - 12 :] = 3
    return (10 * label).float().expand(3, -1, -1).clone(), label


def test_flip_moves_image_and_label_together() -> None:
    image, label = _coded_pair()
    fi, fl = RandomFlip(prob=1.0)(image, label, _gen(0))
    assert torch.equal(fl, label.flip(-1)) and not torch.equal(fl, label)
    assert torch.equal(fi[0], 10 * fl.float())
    same = RandomFlip(prob=0.0)(image, label, _gen(0))
    assert torch.equal(same[1], label)
    flips = [torch.equal(RandomFlip()(image, label, _gen(s))[1], label) for s in range(20)]
    assert 0 < sum(flips) < 20  # prob 0.5 both ways


def test_crop_keeps_alignment_and_varies_with_seed() -> None:
    image, label = _coded_pair()
    crops = [RandomCrop((16, 24))(image, label, _gen(s)) for s in range(6)]
    for ci, cl in crops:
        assert cl.shape == (16, 24) and ci.shape == (3, 16, 24)
        assert torch.equal(ci[0], 10 * cl.float())
    assert len({tuple(cl.flatten().tolist()) for _, cl in crops}) > 1
    ci, cl = RandomCrop((64, 80))(image, label, _gen(0))  # larger than the input: kept whole
    assert torch.equal(cl, label)


def test_crop_cat_max_ratio_rejects_single_class_crops() -> None:
    label = torch.zeros(32, 128, dtype=torch.long)
    label[:, 64:] = 1
    image = label.float().expand(3, -1, -1)
    for seed in range(5):
        _, cl = RandomCrop((32, 64), cat_max_ratio=0.75)(image, label, _gen(seed))
        counts = torch.bincount(cl.flatten(), minlength=2)
        assert counts.min() > 0 and counts.max() / counts.sum() < 0.75
    plain = [RandomCrop((32, 64))(image, label, _gen(s))[1] for s in range(10)]
    assert any(torch.bincount(cl.flatten(), minlength=2).min() / cl.numel() < 0.25 for cl in plain)


def test_random_resize_keeps_alignment_and_ratio() -> None:
    image, label = _coded_pair()
    sizes = set()
    for seed in range(8):
        ri, rl = RandomResize((60, 40), (0.5, 2.0))(image, label, _gen(seed))
        assert ri.shape[-2:] == rl.shape
        h, w = rl.shape
        assert 20 <= h <= 80 and abs(w / h - 1.5) < 0.1
        assert set(rl.unique().tolist()) <= {0, 1, 2, 3}
        agree = (torch.round(ri[0] / 10) == rl).float().mean()
        assert agree > 0.85  # bilinear image vs nearest label differ only along block edges
        sizes.add((h, w))
    assert len(sizes) > 4


def test_rescale_size_matches_mmcv_keep_ratio() -> None:
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)
    assert rescale_size(1024, 2048, (2048, 512)) == (512, 1024)
    assert rescale_size(1024, 2048, (2048, 1024)) == (1024, 2048)
    assert rescale_size(300, 400, (1000, 600)) == (600, 800)


def test_resize_image_only_keeps_the_label() -> None:
    image, label = _coded_pair()
    ri, rl = Resize((120, 80))(image, label)
    assert ri.shape == (3, 80, 120) and rl.shape == (80, 120)
    ri, rl = Resize((120, 80), resize_label=False)(image, label)
    assert ri.shape == (3, 80, 120) and torch.equal(rl, label)


def test_pad_fills_image_and_label() -> None:
    image, label = _coded_pair(10, 12)
    pi, pl = Pad((16, 14), value=0.0, label_value=255)(image, label)
    assert pi.shape == (3, 16, 14) and pl.shape == (16, 14)
    assert torch.equal(pl[:10, :12], label) and (pl[10:] == 255).all() and (pl[:, 12:] == 255).all()
    assert (pi[:, 10:] == 0).all() and torch.equal(pi[:, :10, :12], image)


def test_normalize_uses_imagenet_statistics() -> None:
    image = torch.tensor(IMAGENET_MEAN).view(3, 1, 1).expand(3, 2, 2)
    out, _ = Normalize()(image, torch.zeros(2, 2, dtype=torch.long))
    assert torch.allclose(out, torch.zeros(3, 2, 2), atol=1e-6)
    one_std = image + torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out, _ = Normalize()(one_std, torch.zeros(2, 2, dtype=torch.long))
    assert torch.allclose(out, torch.ones(3, 2, 2), atol=1e-6)


def test_hsv_round_trip_and_known_values() -> None:
    rgb = torch.rand(3, 8, 8, generator=_gen(0))
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(rgb_to_hsv(red).flatten(), torch.tensor([0.0, 1.0, 1.0]))
    cyan = torch.tensor([0.0, 0.5, 0.5]).view(3, 1, 1)
    assert torch.allclose(rgb_to_hsv(cyan).flatten(), torch.tensor([0.5, 1.0, 0.5]))


def test_photometric_distortion_changes_only_the_image() -> None:
    image = torch.rand(3, 16, 16, generator=_gen(1)) * 255
    label = torch.randint(0, 5, (16, 16), generator=_gen(2))
    outs = [PhotoMetricDistortion()(image, label, _gen(s)) for s in range(6)]
    for out, out_label in outs:
        assert out.shape == image.shape and out_label is label
        assert out.min() >= 0 and out.max() <= 255
    assert sum(not torch.allclose(out, image) for out, _ in outs) >= 4
    again = PhotoMetricDistortion()(image, label, _gen(3))[0]
    assert torch.equal(again, outs[3][0])


def test_compose_runs_the_full_training_pipeline_deterministically() -> None:
    image, label = _coded_pair()
    steps = [RandomResize((60, 40)), RandomCrop((32, 32), 0.75), RandomFlip(), Normalize(), Pad((32, 32))]
    pipeline = Compose(steps)
    a, b = pipeline(image, label, _gen(5)), pipeline(image, label, _gen(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (3, 32, 32) and a[1].shape == (32, 32)
    assert "RandomCrop" in repr(pipeline)


def test_synthetic_cache_returns_equal_independent_copies() -> None:
    from upbench.data.colourcoded import _generate_cached, generate

    _generate_cached.cache_clear()
    image, label = generate(32, 32, 12345)
    image.zero_()  # a caller modifying its sample must not change what the next caller gets
    label.fill_(0)
    again_image, again_label = generate(32, 32, 12345)
    assert _generate_cached.cache_info().hits == 1
    fresh_image, fresh_label = _generate_cached.__wrapped__(32, 32, 12345)
    assert torch.equal(again_image, fresh_image) and torch.equal(again_label, fresh_label)
    assert again_image.abs().sum() > 0
