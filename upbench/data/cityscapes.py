"""``cityscapes``: Cityscapes fine annotations, 19 evaluation classes (train ids).

Layout (``root`` is the ``cityscapes`` folder or its parent)::

    cityscapes/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
    cityscapes/gtFine/{train,val}/<city>/<name>_gtFine_labelTrainIds.png   (0..18, 255 = ignore)

The ``*_labelTrainIds.png`` files are not in the download: create them once with
cityscapesscripts' ``createTrainIdLabelImgs`` or mmseg's ``tools/dataset_converters/cityscapes.py``.
"""

from __future__ import annotations

from pathlib import Path

from upbench.data.folder import FolderDataset, find_dataset_dir, folder_dataset, pair_files
from upbench.data.registry import register_dataset

CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
LAYOUT = (
    "cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
    "gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png"
)
IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelTrainIds.png"
HINT = (
    "create the *_gtFine_labelTrainIds.png files with cityscapesscripts' createTrainIdLabelImgs "
    "or mmseg's tools/dataset_converters/cityscapes.py"
)


TITLE = "Cityscapes gtFine (19 classes)"


@register_dataset("cityscapes", num_classes=19, class_names=CLASS_NAMES, title=TITLE)
def build_cityscapes(
    split: str,
    root: str | Path | None = None,
    *,
    augment: bool | None = None,
    scale: tuple[int, int] = (2048, 1024),
    crop_size: int | tuple[int, int] = (512, 1024),
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    test_scale: tuple[int, int] | None = None,
    count: int | None = None,
    augment_seed: int | None = None,
) -> FolderDataset:
    """Cityscapes ``split`` from ``root``; options as for ``ade20k`` (crop ``(H, W) = (512, 1024)``)."""
    required = (f"leftImg8bit/{split}", f"gtFine/{split}")
    base = find_dataset_dir(root, ("", "cityscapes"), required, "Cityscapes", LAYOUT)
    images = base / "leftImg8bit" / split

    def label_of(image: Path) -> Path:
        name = image.name[: -len(IMAGE_SUFFIX)]
        return base / "gtFine" / split / image.parent.name / f"{name}{LABEL_SUFFIX}"

    pairs = pair_files(images.glob(f"*/*{IMAGE_SUFFIX}"), label_of, "Cityscapes", images, HINT)
    return folder_dataset(
        pairs,
        split,
        num_classes=19,
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
