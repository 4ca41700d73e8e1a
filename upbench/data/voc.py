"""``voc``: Pascal VOC 2012 segmentation, 21 classes (background + 20), 255 = ignored border.

Layout (``root`` is the ``VOC2012`` folder, ``VOCdevkit`` or the parent of ``VOCdevkit``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png        (palette PNG: index = class, 255 = border)
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt   (one id per line)

Palette indices are the class ids, so labels are read as stored (never via the RGB colours).
"""

from __future__ import annotations

from pathlib import Path

from upbench.data.folder import FolderDataset, find_dataset_dir, folder_dataset, pair_files
from upbench.data.registry import register_dataset
from upbench.errors import DatasetError

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
LAYOUT = "VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/<split>.txt}"

TITLE = "Pascal VOC 2012"


@register_dataset(
    "voc",
    num_classes=21,
    class_names=CLASS_NAMES,
    title="Pascal VOC 2012 (21 classes)",
    splits=("train", "val", "trainval"),
)
def build_voc(
    split: str,
    root: str | Path | None = None,
    *,
    augment: bool | None = None,
    scale: tuple[int, int] = (2048, 512),
    crop_size: int | tuple[int, int] = 512,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    test_scale: tuple[int, int] | None = None,
    count: int | None = None,
    augment_seed: int | None = None,
) -> FolderDataset:
    """VOC 2012 ``split`` from ``root``; options as for ``ade20k``."""
    base = find_dataset_dir(
        root,
        ("", "VOC2012", "VOCdevkit/VOC2012"),
        ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"),
        TITLE,
        LAYOUT,
    )
    list_file = base / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        raise DatasetError(f"{TITLE} at {base}: missing split list {list_file} (one image id per line)")
    ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
    pairs = pair_files(
        (base / "JPEGImages" / f"{i}.jpg" for i in ids),
        lambda p: base / "SegmentationClass" / f"{p.stem}.png",
        TITLE,
        list_file,
    )
    missing = [image for image, _ in pairs if not image.is_file()]
    if missing:
        raise DatasetError(f"{TITLE}: {len(missing)} ids in {list_file} have no image, e.g. {missing[0]}")
    return folder_dataset(
        pairs,
        split,
        num_classes=21,
        decode=None,
        count=count,
        augment_seed=augment_seed,
        augment=augment,
        scale=scale,
        crop_size=crop_size,
        ratio_range=ratio_range,
        cat_max_ratio=cat_max_ratio,
        test_scale=test_scale,
    )
