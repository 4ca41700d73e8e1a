"""Datasets and transforms.

Public API: :func:`build_dataset` ``(name, *, split, root=None, **options)``, :func:`dataset_info`,
:func:`list_datasets`, :class:`DatasetInfo`. A dataset yields ``(image, label)``: ``image`` a
float tensor ``[3, H, W]`` normalised with the ImageNet mean and std (on the [0, 255] scale),
``label`` a long tensor ``[H, W]`` in ``[0, num_classes)`` or 255 (ignored).

Built-in datasets: ``contextual`` (generated, no files: the default; its classes need context,
its colours are random per instance), ``colourcoded`` (the first generator, one colour per class:
kept as the demonstration of a shortcut, never to rank operators), ``ade20k``, ``cityscapes``,
``voc`` (local files in their standard layouts; ``root`` or ``$UPBENCH_DATA`` or ``./data``).
Splits ``train`` and ``val`` (``contextual`` also ``pretrain``, the shipped encoders' own):

* ``train`` of a real dataset (``augment`` on by default): random resize 0.5 to 2.0 of the base
  scale, random crop ``crop_size`` (``cat_max_ratio`` 0.75), horizontal flip, photometric
  distortion, normalisation, padding to ``crop_size`` (label 255): every sample is
  ``crop_size``.
* ``val``: the original image (normalised) and the original label, same size; with
  ``test_scale=(long, short)`` only the image is resized (aspect kept) and predictions must be
  resized to the label. Real images differ in size: evaluate with batch size 1.

Randomness: generation of ``contextual`` and ``colourcoded`` depends only on ``(seed, split, index)``; augmentation
draws from a per-sample ``torch.Generator`` (see :mod:`upbench.data.base`). The transforms
(:mod:`upbench.data.transforms`) are exported for custom pipelines.
"""

from upbench.data.base import SegmentationDataset
from upbench.data.registry import (
    DatasetInfo,
    build_dataset,
    dataset_info,
    list_datasets,
    register_dataset,
    unregister_dataset,
)
from upbench.data.transforms import (
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
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Compose",
    "DatasetInfo",
    "Normalize",
    "Pad",
    "PhotoMetricDistortion",
    "RandomCrop",
    "RandomFlip",
    "RandomResize",
    "Resize",
    "SegmentationDataset",
    "build_dataset",
    "dataset_info",
    "list_datasets",
    "register_dataset",
    "unregister_dataset",
]
