"""The dataset registry: :class:`DatasetInfo`, registration, lookup and :func:`build_dataset`.

Each dataset module registers one builder, a function ``builder(split, root, **options)`` whose
options are keyword-only parameters with defaults. :func:`build_dataset` checks the name, the
split and the option names before it calls the builder, so a typo gives one clear
:class:`~upbench.errors.ConfigError` instead of a ``TypeError`` deep in the stack.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from upbench.errors import ConfigError

_BUILTIN_MODULES = ("contextual", "colourcoded", "ade20k", "cityscapes", "voc")
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


_datasets: dict[str, tuple[DatasetInfo, Builder]] = {}
_loaded = False


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
        if name in _datasets:
            raise ValueError(f"dataset '{name}' is already registered by {_datasets[name][1].__module__}")
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
        _datasets[name] = (info, builder)
        return builder

    return decorate


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(f"upbench.data.{module}")


def _lookup(name: str) -> tuple[DatasetInfo, Builder]:
    _load_builtins()
    if name in RENAMED and name not in _datasets:
        raise ConfigError(f"dataset '{name}': {RENAMED[name]}")
    if name not in _datasets:
        close = difflib.get_close_matches(str(name), _datasets, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown dataset '{name}'.{hint} Available: {', '.join(sorted(_datasets))}")
    return _datasets[name]


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    _load_builtins()
    return sorted(_datasets)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (:class:`ConfigError` if unknown)."""
    return _lookup(name)[0]


def build_dataset(name: str, *, split: str, root: str | Path | None = None, **options: Any) -> Dataset:
    """Build split ``split`` of dataset ``name``.

    The dataset yields ``(image, label)``: ``image`` a float tensor ``[3, H, W]`` normalised with
    the ImageNet mean and std, ``label`` a long tensor ``[H, W]`` with values in
    ``[0, num_classes)`` or ``ignore_index`` (255). ``root`` is the folder of a real dataset (or
    its parent); ``options`` are the dataset's keyword options (see ``dataset_info(name).options``
    and the builder's docstring).
    """
    info, builder = _lookup(name)
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
