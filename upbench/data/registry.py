"""The dataset registry: :class:`DatasetInfo`, registration, lookup and :func:`build_dataset`.

Each dataset module registers one builder, a function ``builder(split, root, **options)`` whose
options are keyword-only parameters with defaults. Built-in datasets are the public modules of
``upbench.data`` that register one; third-party packages add modules through the entry-point
group ``upbench.datasets`` (:mod:`upbench.plugins`). :func:`build_dataset` checks the name, the
split and the option names before it calls the builder, so a typo gives one clear
:class:`~upbench.errors.ConfigError` instead of a ``TypeError`` deep in the stack.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from upbench.errors import ConfigError
from upbench.plugins import Registry

ENTRY_POINT_GROUP = "upbench.datasets"
#: Names a dataset had before, and what to use now.
RENAMED = {
    "synthetic": "it is called 'colourcoded' now (one colour per class: a shortcut demonstration); "
    "the default built-in dataset is 'contextual'",
}

Builder = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a registered dataset.

    ``num_classes`` counts the evaluated classes; labels are in ``[0, num_classes)`` or equal
    ``ignore_index``. ``options`` maps each keyword option of :func:`build_dataset` to its
    default. ``needs_root`` is False for generated datasets.
    """

    name: str
    num_classes: int
    ignore_index: int
    class_names: tuple[str, ...]
    title: str = ""
    splits: tuple[str, ...] = ("train", "val")
    needs_root: bool = True
    options: dict[str, Any] = field(default_factory=dict)


_datasets: Registry[tuple[DatasetInfo, Builder]] = Registry(
    "dataset", "upbench.data", ENTRY_POINT_GROUP, ConfigError, renamed=RENAMED
)


def _options_of(builder: Builder) -> dict[str, Any]:
    """The keyword-only options of ``builder`` and their defaults."""
    params = inspect.signature(builder).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def register_dataset(
    name: str,
    *,
    num_classes: int,
    class_names: tuple[str, ...],
    ignore_index: int = 255,
    title: str = "",
    splits: tuple[str, ...] = ("train", "val"),
    needs_root: bool = True,
) -> Callable[[Builder], Builder]:
    """Function decorator that registers ``builder(split, root, **options)`` under ``name``."""
    if len(class_names) != num_classes:
        raise ValueError(f"dataset '{name}': {len(class_names)} class names for {num_classes} classes")

    def decorate(builder: Builder) -> Builder:
        info = DatasetInfo(
            name,
            num_classes,
            ignore_index,
            tuple(class_names),
            title,
            tuple(splits),
            needs_root,
            _options_of(builder),
        )
        _datasets.add(name, (info, builder), builder.__module__)
        return builder

    return decorate


def unregister_dataset(name: str) -> None:
    """Remove ``name`` (for tests and interactive sessions)."""
    _datasets.remove(name)


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return _datasets.names()


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (:class:`ConfigError` if unknown)."""
    return _datasets.get(name)[0]


def build_dataset(name: str, *, split: str, root: str | Path | None = None, **options: Any) -> Dataset:
    """Build split ``split`` of dataset ``name``.

    The dataset yields ``(image, label)``: ``image`` a float tensor ``[3, H, W]`` normalised with
    the ImageNet mean and std, ``label`` a long tensor ``[H, W]`` with values in
    ``[0, num_classes)`` or ``ignore_index`` (255). ``root`` is the folder of a real dataset (or
    its parent); ``options`` are the dataset's keyword options (see ``dataset_info(name).options``
    and the builder's docstring).
    """
    info, builder = _datasets.get(name)
    if split not in info.splits:
        raise ConfigError(f"dataset '{name}' has no split '{split}'; splits: {', '.join(info.splits)}")
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ConfigError(
            f"dataset '{name}' got unknown option(s) {', '.join(repr(k) for k in unknown)}; "
            f"accepted: {', '.join(info.options)}"
        )
    if root is not None and not info.needs_root:
        raise ConfigError(f"dataset '{name}' is generated and takes no root (got root={str(root)!r})")
    return builder(split, root, **options)
