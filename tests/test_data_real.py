"""upbench.data loaders of ADE20K, Cityscapes and VOC 2012 on tiny fixtures in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from upbench.data import IMAGENET_MEAN, IMAGENET_STD, build_dataset
from upbench.errors import DatasetError

H, W = 24, 32


def _write_image(path: Path, seed: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, fmt)


def _voc_palette() -> list[int]:
    """The VOC colour map: the bits of index k spread over the high bits of R, G and B."""
    palette = []
    for k in range(256):
        rgb = [0, 0, 0]
        for j in range(8):
            for ch in range(3):
                rgb[ch] |= ((k >> (3 * j + ch)) & 1) << (7 - j)
        palette += rgb
    return palette


def _write_label(path: Path, values: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    values = values.astype(np.uint8)
    if mode == "P":  # indices stored as they are, colours from the palette
        im = Image.frombytes("P", (values.shape[1], values.shape[0]), values.tobytes())
        im.putpalette(_voc_palette())
    else:
        im = Image.fromarray(values).convert(mode)
    im.save(path, "PNG")


def _label(values: list[int]) -> np.ndarray:
    """An ``H x W`` label with one vertical band per value."""
    bands = np.array_split(np.arange(W), len(values))
    out = np.zeros((H, W), dtype=np.uint8)
    for band, v in zip(bands, values):
        out[:, band] = v
    return out


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def ade(tmp_path: Path) -> Path:
    base = tmp_path / "ADEChallengeData2016"
    for split, n in (("training", 3), ("validation", 2)):
        for i in range(n):
            stem = f"ADE_{split[:5]}_{i:08d}"
            _write_image(base / "images" / split / f"{stem}.jpg", i)
            _write_label(base / "annotations" / split / f"{stem}.png", _label([0, 1, 37, 150]))
    return tmp_path


@pytest.fixture
def cityscapes(tmp_path: Path) -> Path:
    base = tmp_path / "cityscapes"
    for split, cities in (("train", ("aachen", "bremen")), ("val", ("lindau",))):
        for city in cities:
            name = f"{city}_000000_000019"
            _write_image(base / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", 1, "PNG")
            label = base / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png"
            _write_label(label, _label([0, 18, 255]))
    return tmp_path


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    base = tmp_path / "VOCdevkit" / "VOC2012"
    ids = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
    for split, names in ids.items():
        for name in names:
            _write_image(base / "JPEGImages" / f"{name}.jpg", 2)
            values = _label([0, 15, 20])
            values[0, :] = values[:, 0] = 255  # the VOC border: ignored
            _write_label(base / "SegmentationClass" / f"{name}.png", values, mode="P")
        sets = base / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return tmp_path


# --------------------------------------------------------------------------- loading and label mapping
def _check_sample(image: torch.Tensor, label: torch.Tensor, shape: tuple[int, int] = (H, W)) -> None:
    assert image.shape == (3, *shape) and image.dtype == torch.float32
    assert label.shape == shape and label.dtype == torch.int64
    assert image.abs().max() < 3  # normalised


def test_ade20k_reduces_zero_label(ade: Path) -> None:
    for root in (ade, ade / "ADEChallengeData2016"):
        ds = build_dataset("ade20k", split="val", root=root)
        assert len(ds) == 2
        image, label = ds[0]
        _check_sample(image, label)
        assert torch.equal(label, torch.from_numpy(_label([255, 0, 36, 149])).long())
    assert len(build_dataset("ade20k", split="train", root=ade)) == 3
    assert len(build_dataset("ade20k", split="train", root=ade, count=2)) == 2


def test_cityscapes_reads_train_ids(cityscapes: Path) -> None:
    ds = build_dataset("cityscapes", split="train", root=cityscapes, augment=False)
    assert len(ds) == 2 and [p[0].parent.name for p in ds.pairs] == ["aachen", "bremen"]
    image, label = ds[1]
    _check_sample(image, label)
    assert torch.equal(label, torch.from_numpy(_label([0, 18, 255])).long())
    raw = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)  # PNG: lossless
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(image, (torch.from_numpy(raw).permute(2, 0, 1).float() - mean) / std, atol=1e-5)
    assert len(build_dataset("cityscapes", split="val", root=cityscapes / "cityscapes")) == 1


def test_voc_reads_palette_indices_and_keeps_the_border(voc: Path) -> None:
    for root in (voc, voc / "VOCdevkit", voc / "VOCdevkit" / "VOC2012"):
        ds = build_dataset("voc", split="train", root=root, augment=False)
        assert len(ds) == 2
    with Image.open(ds.pairs[0][1]) as im:  # a palette PNG whose colours are not the class ids
        assert im.mode == "P" and im.convert("RGB").getpixel((W - 1, H - 1)) == (0, 64, 128)
    image, label = ds[0]
    _check_sample(image, label)
    expected = _label([0, 15, 20])
    expected[0, :] = expected[:, 0] = 255
    assert torch.equal(label, torch.from_numpy(expected).long())
    assert len(build_dataset("voc", split="val", root=voc)) == 1


def test_train_split_augments_to_the_crop_size(ade: Path) -> None:
    ds = build_dataset(
        "ade20k", split="train", root=ade, scale=(32, 24), crop_size=16, augment_seed=0, cat_max_ratio=1.0
    )
    values = set()
    for i in range(len(ds)):
        image, label = ds[i]
        _check_sample(image, label, (16, 16))
        values |= set(label.unique().tolist())
    assert values <= {255, 0, 36, 149} and len(values) > 1


def test_val_test_scale_resizes_only_the_image(ade: Path) -> None:
    image, label = build_dataset("ade20k", split="val", root=ade, test_scale=(64, 48))[0]
    assert image.shape == (3, 48, 64) and label.shape == (H, W)


# --------------------------------------------------------------------------- wrong paths and layouts
def test_missing_root_names_the_path_and_layout(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=f"{missing}.*does not exist.*ADEChallengeData2016/images"):
        build_dataset("ade20k", split="train", root=missing)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ade20k", "ADEChallengeData2016/images/{training,validation}"),
        ("cityscapes", "leftImg8bit/{train,val}/<city>/.*_leftImg8bit.png"),
        ("voc", "VOCdevkit/VOC2012/{JPEGImages"),
    ],
)
def test_empty_root_names_the_expected_layout(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(DatasetError, match=f"not found: expected .*{expected}.* in {tmp_path}"):
        build_dataset(name, split="val", root=tmp_path)


def test_missing_folder_is_named(ade: Path) -> None:
    base = ade / "ADEChallengeData2016"
    for f in (base / "annotations" / "validation").iterdir():
        f.unlink()
    (base / "annotations" / "validation").rmdir()
    with pytest.raises(DatasetError, match=f"missing folder.*{base / 'annotations' / 'validation'}"):
        build_dataset("ade20k", split="val", root=ade)


def test_missing_label_file_is_named(ade: Path) -> None:
    label = ade / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"
    label.unlink()
    with pytest.raises(DatasetError, match=f"1 of 3 images have no label file, e.g. expected {label}"):
        build_dataset("ade20k", split="train", root=ade)


def test_cityscapes_without_train_ids_explains_how_to_make_them(cityscapes: Path) -> None:
    for f in (cityscapes / "cityscapes" / "gtFine" / "val").rglob("*_labelTrainIds.png"):
        f.rename(f.with_name(f.name.replace("labelTrainIds", "labelIds")))
    expected = "lindau_000000_000019_gtFine_labelTrainIds.png.*createTrainIdLabelImgs"
    with pytest.raises(DatasetError, match=expected):
        build_dataset("cityscapes", split="val", root=cityscapes)


def test_voc_missing_split_list_and_rgb_labels(voc: Path) -> None:
    base = voc / "VOCdevkit" / "VOC2012"
    with pytest.raises(
        DatasetError, match=f"missing split list {base / 'ImageSets' / 'Segmentation' / 'trainval.txt'}"
    ):
        build_dataset("voc", split="trainval", root=voc)
    label = base / "SegmentationClass" / "2007_000033.png"
    _write_label(label, _label([0, 15]), mode="RGB")
    ds = build_dataset("voc", split="val", root=voc)
    with pytest.raises(DatasetError, match=f"{label}: label image has mode RGB"):
        ds[0]


def test_out_of_range_label_values_are_reported(cityscapes: Path) -> None:
    city = cityscapes / "cityscapes" / "gtFine" / "val" / "lindau"
    label = city / "lindau_000000_000019_gtFine_labelTrainIds.png"
    _write_label(label, _label([0, 19, 33]))
    with pytest.raises(DatasetError, match=r"label values \[19, 33\] are outside 0..18"):
        build_dataset("cityscapes", split="val", root=cityscapes)[0]


def test_size_mismatch_is_reported(voc: Path) -> None:
    label = voc / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000033.png"
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(label)
    with pytest.raises(DatasetError, match="but its label"):
        build_dataset("voc", split="val", root=voc)[0]
