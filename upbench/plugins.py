"""How every registry of upbench finds its entries: built-ins by module, third parties by entry point.

One pattern for operators, datasets, metrics and executors: a class or function registers itself
with a decorator in its own module; the registry imports every public module of its built-in
package (:func:`import_modules`; names starting with ``_`` are private helpers and skipped) and
then every entry point of its group (:func:`load_entry_points`) on the first lookup. So adding one
is one new file, or one entry point in a third-party package's ``pyproject.toml``. Datasets,
metrics and executors keep their entries in a :class:`Registry`; the operator registry
(:mod:`upbench.registry`) adds aliases and origins on top of the same two functions.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from importlib import metadata
from typing import Generic, TypeVar

from upbench.errors import UpbenchError

T = TypeVar("T")


def import_modules(package: str) -> list[str]:
    """Import every public module of ``package`` (sorted by name); return their names."""
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


def load_entry_points(
    group: str, what: str, context: Callable[[str], AbstractContextManager[object]] | None = None
) -> list[str]:
    """Import every entry point of ``group`` (``what`` names the kind of plugin in messages); return
    the names that loaded. One that fails to import is skipped with a warning naming it and the
    exception; the others stay available. ``context(name)`` wraps each import (e.g. to record the
    plugin as the origin of what it registers)."""
    loaded = []
    for ep in metadata.entry_points(group=group):
        try:
            with context(ep.name) if context else contextlib.nullcontext():
                ep.load()
        except Exception as exc:  # a broken plugin must not break upbench
            warnings.warn(
                f"upbench: {what} plugin '{ep.name}' ({ep.value}) failed to load and is skipped: "
                f"{type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            loaded.append(ep.name)
    return loaded


def unknown_name(what: str, name: object, known: list[str]) -> str:
    """The one-line message for an unknown ``what`` ``name``, with a suggestion and the choices."""
    import difflib

    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown {what} '{name}'.{hint} Available: {', '.join(sorted(known))}"


class Registry(Generic[T]):
    """Entries by name for one kind of plugin (``what``): built-ins are the public modules of
    ``package``, third parties the entry points of ``group``; both load on the first lookup.
    An unknown name raises ``error`` with a suggestion and the choices; a name in ``renamed`` (an
    old name that nothing registers now) raises ``error`` with its entry, which says what to use."""

    def __init__(
        self,
        what: str,
        package: str,
        group: str,
        error: type[UpbenchError] = UpbenchError,
        *,
        renamed: dict[str, str] | None = None,
    ) -> None:
        self.what, self.package, self.group, self.error = what, package, group, error
        self.renamed = dict(renamed or {})
        self._entries: dict[str, T] = {}
        self._modules: dict[str, str] = {}
        self._loaded = False

    def add(self, name: str, entry: T, module: str) -> None:
        """Register ``entry`` (defined in ``module``) as ``name``; a taken name is an error naming both."""
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.what} '{name}' from {module} is already registered by {self._modules[name]}")
        self._entries[name], self._modules[name] = entry, module

    def remove(self, name: str) -> None:
        """Forget ``name`` (for tests and interactive sessions)."""
        self._entries.pop(name, None)
        self._modules.pop(name, None)

    def load(self) -> None:
        """Import the built-ins and the plugins, once."""
        if not self._loaded:
            self._loaded = True
            import_modules(self.package)
            load_entry_points(self.group, self.what)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self.load()
        return sorted(self._entries)

    def entries(self) -> list[T]:
        """The registered entries, by name."""
        return [self._entries[name] for name in self.names()]

    def get(self, name: str) -> T:
        """The entry of ``name``."""
        self.load()
        if name in self.renamed and name not in self._entries:
            raise self.error(f"{self.what} '{name}': {self.renamed[name]}")
        if name not in self._entries:
            raise self.error(unknown_name(self.what, name, list(self._entries)))
        return self._entries[name]
