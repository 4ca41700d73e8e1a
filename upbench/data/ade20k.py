"""``ade20k``: ADE20K (SceneParsing, ADEChallengeData2016), 150 classes, reduce-zero-label.

Layout (``root`` is the ``ADEChallengeData2016`` folder or a parent of it, e.g. ``data/`` or
``data/ade/``)::

    ADEChallengeData2016/images/{training,validation}/*.jpg
    ADEChallengeData2016/annotations/{training,validation}/*.png   (same stem; 0 = other, 1..150)

Labels are mapped as in mmseg (``reduce_zero_label``): 0 -> 255 (ignored), ``k`` -> ``k - 1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from upbench.data.folder import FolderDataset, find_dataset_dir, folder_dataset, pair_files
from upbench.data.registry import register_dataset
from upbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)  # fmt: skip
SPLIT_DIRS = {"train": "training", "val": "validation"}
LAYOUT = "ADEChallengeData2016/images/{training,validation}/*.jpg and annotations/{training,validation}/*.png"


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """0 -> 255, ``k`` -> ``k - 1`` (255 stays 255), as int64."""
    out = label.astype(np.int64) - 1
    out[(label == 0) | (label == 255)] = 255
    return out


TITLE = "ADE20K SceneParsing (150 classes)"


@register_dataset("ade20k", num_classes=150, class_names=CLASS_NAMES, title=TITLE)
def build_ade20k(
    split: str,
    root: str | Path | None = None,
    *,
    augment: bool | None = None,
    scale: tuple[int, int] = (2048, 512),
    crop_size: int | tuple[int, int] = 512,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    test_scale: tuple[int, int] | None = None,
    test_size_divisor: int = 1,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    count: int | None = None,
    augment_seed: int | None = None,
) -> FolderDataset:
    """ADE20K ``split`` from ``root`` (default ``$UPBENCH_DATA`` or ``./data``).

    ``augment`` (default: on for train) runs the mmseg recipe: random resize ``ratio_range`` of
    ``scale = (long, short)``, random crop ``crop_size`` with ``cat_max_ratio``, flip,
    photometric distortion, normalisation, padding to ``crop_size`` (label 255). Without it the
    dataset yields the original image (normalised) and the original label; ``test_scale``
    resizes only the image (aspect kept), e.g. ``[2048, 512]`` for mmseg's test pipeline, and
    ``test_size_divisor = 32`` then resizes it to multiples of 32 (the original SegFormer code).
    ``mean``/``std`` normalise RGB on the 0-255 scale (ImageNet statistics by default; mmseg's
    Segmenter configs use 127.5 for both). ``count`` keeps the first ``count`` samples (sorted
    by file name).
    """
    sub = SPLIT_DIRS[split]
    base = find_dataset_dir(
        root,
        ("", "ADEChallengeData2016", "ade/ADEChallengeData2016"),
        (f"images/{sub}", f"annotations/{sub}"),
        "ADE20K",
        LAYOUT,
    )
    images = base / "images" / sub
    labels = base / "annotations" / sub
    pairs = pair_files(images.glob("*.jpg"), lambda p: labels / f"{p.stem}.png", "ADE20K", images)
    return folder_dataset(
        pairs,
        split,
        num_classes=150,
        decode=reduce_zero_label,
        count=count,
        augment_seed=augment_seed,
        augment=augment,
        scale=scale,
        crop_size=crop_size,
        ratio_range=ratio_range,
        cat_max_ratio=cat_max_ratio,
        test_scale=test_scale,
        test_size_divisor=test_size_divisor,
        mean=mean,
        std=std,
    )
