"""The executor registry: ``@register_executor(name)`` on a class in its own module.

An executor class has a ``name``, ``run(tasks, on_done)`` (see :class:`upbench.executors.base.Executor`)
and a classmethod ``from_settings(settings, *, dry_run)`` building it from the suite's ``[executor]``
table with the command-line flags over it; one that can print its jobs instead of running them
(``--dry-run``) also has ``describe(tasks) -> str``. Built-ins are the public modules of
``upbench.executors``; third-party packages add modules through the entry-point group
``upbench.executors``. Backends (ray, submitit) are imported inside methods, so loading the
registry imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from upbench.errors import ConfigError
from upbench.plugins import Registry

ENTRY_POINT_GROUP = "upbench.executors"

_executors: Registry[type] = Registry("executor", "upbench.executors", ENTRY_POINT_GROUP, ConfigError)

E = TypeVar("E", bound=type)


def register_executor(name: str) -> Callable[[E], E]:
    """Class decorator that registers an executor under ``name`` (also set as its ``name``)."""

    def decorate(cls: E) -> E:
        if not callable(getattr(cls, "from_settings", None)) or not callable(getattr(cls, "run", None)):
            raise TypeError(f"executor '{name}' ({cls.__qualname__}) needs run(tasks, on_done) and from_settings()")
        _executors.add(name, cls, cls.__module__)
        cls.name = name
        return cls

    return decorate


def unregister_executor(name: str) -> None:
    """Remove ``name`` (for tests and interactive sessions)."""
    _executors.remove(name)


def executor_names() -> list[str]:
    """Names of the registered executors, sorted."""
    return _executors.names()


def make_executor(name: str, settings: dict[str, Any], *, dry_run: bool = False) -> Any:
    """The executor ``name`` configured by ``settings`` (the suite's ``[executor]`` table with the
    command-line flags applied over it; see :class:`upbench.suite.ExecutorSpec`)."""
    cls = _executors.get(name)
    if dry_run and not callable(getattr(cls, "describe", None)):
        printing = ", ".join(c.name for c in _executors.entries() if callable(getattr(c, "describe", None)))
        raise ConfigError(f"--dry-run is for --executor {printing} (it prints the jobs that would be submitted)")
    return cls.from_settings(settings, dry_run=dry_run)
