"""The operator registry: registration by decorator, lookup, creation and plugin loading.

Built-in operators live one per module in the top-level ``operators/`` folder, installed as the
package ``upbench_operators``; each module decorates its class with :func:`register_operator`.
Third-party packages plug in through the entry-point group ``upbench.operators`` (the value is a
module to import). Both load lazily, on the first lookup, not at ``import upbench``.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from upbench.errors import InvalidOptionError, UnknownOperatorError, UpbenchError
from upbench.plugins import load_entry_points
from upbench.upsampler import FAMILIES, OperatorInfo, Upsampler, check_scale
from upbench.validation import raise_if, validate

ENTRY_POINT_GROUP = "upbench.operators"
BUILTIN_PACKAGE = "upbench_operators"
_BASE_PARAMETERS = ("self", "in_channels", "scale", "guide_channels")

_operators: dict[str, type[Upsampler]] = {}
_aliases: dict[str, str] = {}
_origin = "builtin"
_loaded = False
_load_error: str | None = None

U = TypeVar("U", bound=type[Upsampler])


@contextlib.contextmanager
def _registering_as(origin: str) -> Iterator[None]:
    global _origin
    previous, _origin = _origin, origin
    try:
        yield
    finally:
        _origin = previous


def _constructor_options(cls: type[Upsampler]) -> dict[str, Any]:
    """The options of ``cls``: keyword parameters of ``__init__`` beyond the base ones."""
    options: dict[str, Any] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{cls.__qualname__}.__init__ must not take *args or **kwargs (options are validated)")
        if p.name in _BASE_PARAMETERS:
            continue
        if p.default is p.empty:
            raise TypeError(f"{cls.__qualname__}.__init__: option '{p.name}' needs a default value")
        options[p.name] = p.default
    return options


def register_operator(
    name: str,
    *,
    title: str,
    guided: bool,
    guide_passthrough: bool = False,
    learnable: bool = True,
    paper: str = "",
    scales: tuple[int, ...] | None = None,
    any_size: bool = False,
    family: Literal["segmentation", "task-agnostic"] = "segmentation",
    code: str = "",
    conventions: dict[str, str] | None = None,
    deviations: tuple[str, ...] = (),
    notes: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
) -> Callable[[U], U]:
    """Class decorator that registers an :class:`Upsampler` subclass under ``name``.

    The keyword arguments become the class's :class:`OperatorInfo`; options and their defaults
    are read from the constructor signature. A name (or alias) that is already taken raises a
    ``ValueError`` naming both defining modules.
    """

    def decorator(cls: U) -> U:
        if not (isinstance(cls, type) and issubclass(cls, Upsampler)):
            raise TypeError(f"@register_operator('{name}') must decorate an upbench.Upsampler subclass, got {cls!r}")
        if name != name.lower() or not name.replace("_", "").isalnum():
            raise ValueError(f"operator name must be lowercase snake_case, got '{name}'")
        if family not in FAMILIES:
            raise ValueError(f"operator '{name}': family must be one of {FAMILIES}, got {family!r}")
        if guide_passthrough and not guided:
            raise ValueError(f"operator '{name}': guide_passthrough=True needs guided=True")
        for key in (name, *aliases):
            existing = _operators.get(_aliases.get(key, key))
            if existing is not None:
                raise ValueError(
                    f"operator name '{key}' from {cls.__module__} is already registered by {existing.__module__}"
                )
        cls.info = OperatorInfo(
            name=name,
            title=title,
            guided=guided,
            guide_passthrough=guide_passthrough,
            learnable=learnable,
            paper=paper,
            scales=tuple(scales) if scales is not None else None,
            any_size=bool(any_size),
            family=family,
            code=code,
            conventions=dict(conventions or {}),
            deviations=tuple(deviations),
            notes=tuple(notes),
            aliases=tuple(aliases),
            options=_constructor_options(cls),
            origin=_origin,
            module=cls.__module__,
        )
        _operators[name] = cls
        for alias in aliases:
            _aliases[alias] = name
        return cls

    return decorator


def unregister_operator(name: str) -> None:
    """Remove ``name`` and its aliases from the registry (for tests and interactive sessions)."""
    cls = _operators.pop(name, None)
    if cls is None:
        raise UnknownOperatorError(f"unknown operator '{name}'; nothing to unregister")
    for alias in cls.info.aliases:
        _aliases.pop(alias, None)


def _import_builtins() -> None:
    """Import the built-in zoo, installed as ``upbench_operators`` or found beside ``upbench/``."""
    if BUILTIN_PACKAGE in sys.modules:
        return
    try:
        importlib.import_module(BUILTIN_PACKAGE)
        return
    except ModuleNotFoundError as err:
        if err.name != BUILTIN_PACKAGE:
            raise
    # Running from a source checkout that was not installed: load ../operators as the package.
    folder = Path(__file__).resolve().parent.parent / "operators"
    spec = importlib.util.spec_from_file_location(
        BUILTIN_PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None or not folder.is_dir():
        raise UpbenchError(f"cannot find the built-in operators: expected the folder {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[BUILTIN_PACKAGE] = module
    spec.loader.exec_module(module)


def load_plugins() -> list[str]:
    """Import every ``upbench.operators`` entry point; return the names that loaded.

    A plugin that fails to import is reported with a warning naming it and the exception; the
    other operators stay available.
    """
    return load_entry_points(ENTRY_POINT_GROUP, "operator", lambda name: _registering_as(f"plugin:{name}"))


def _ensure_loaded() -> None:
    """Import the built-in operators and plugins once; a failing built-in module fails every lookup."""
    global _loaded, _load_error
    if _load_error is not None:
        raise UpbenchError(_load_error)
    if _loaded:
        return
    try:
        _import_builtins()
    except Exception as exc:  # never run on with a partial registry
        module = getattr(exc, "_upbench_module", None) or _failing_module(exc)
        _load_error = (
            f"the built-in operators could not be loaded: module {module} failed with {type(exc).__name__}: {exc}"
        )
        raise UpbenchError(_load_error) from exc
    _loaded = True
    load_plugins()


def _failing_module(exc: BaseException) -> str:
    """The innermost ``upbench_operators`` module in the traceback of ``exc`` (or the package)."""
    found = BUILTIN_PACKAGE
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "")
        if name.startswith(BUILTIN_PACKAGE):
            found = name
        tb = tb.tb_next
    return found


def get_operator(name: str) -> type[Upsampler]:
    """The class registered under ``name`` (or one of its aliases)."""
    _ensure_loaded()
    if not isinstance(name, str):
        raise UnknownOperatorError(f"operator name must be a string, got {name!r}")
    key = _aliases.get(name, name)
    if key in _operators:
        return _operators[key]
    known = sorted(_operators)
    close = difflib.get_close_matches(name, known + sorted(_aliases), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownOperatorError(f"unknown operator '{name}'.{hint} Available: {', '.join(known)}")


def operator_info(name: str) -> OperatorInfo:
    """The :class:`OperatorInfo` of the operator ``name``."""
    return get_operator(name).info


def list_operators(pattern: str = "*", *, guided: bool | None = None) -> list[str]:
    """Sorted names of the registered operators matching the ``fnmatch`` ``pattern``."""
    _ensure_loaded()
    names = [n for n in sorted(_operators) if fnmatch.fnmatchcase(n, pattern)]
    if guided is not None:
        names = [n for n in names if _operators[n].info.guided == guided]
    return names


def check_options(cls: type[Upsampler], options: dict[str, Any]) -> None:
    """Reject unknown options and values of the wrong type, naming the valid ones."""
    info = cls.info
    valid = info.options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "none"
        raise InvalidOptionError(
            f"operator '{info.name}' got unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; accepted: {accepted}"
        )
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception:  # unresolvable annotations: skip type checks
        hints = {}
    problems: list[str] = []
    for key, value in options.items():
        validate(value, hints.get(key, Any), f"operator '{info.name}': option '{key}'", problems)
    raise_if(problems, InvalidOptionError)


def check_own_options(op: Upsampler, values: dict[str, Any]) -> None:
    """Check an operator's option values against its constructor annotations (call in ``__init__``
    as ``check_own_options(self, locals())``), so direct construction is validated like
    :func:`create_operator`."""
    cls = type(op)
    names = _constructor_options(cls)
    check_options(cls, {k: values[k] for k in names if k in values})


def create_operator(
    name: str, in_channels: int, scale: int, guide_channels: int | None = None, **options: Any
) -> Upsampler:
    """Build the operator ``name`` for ``in_channels`` LR channels and integer ``scale``.

    Options are checked against the constructor before it runs; unknown names or wrong types
    raise :class:`~upbench.errors.InvalidOptionError` listing the accepted options.
    """
    cls = get_operator(name)
    check_scale(cls.info, scale)
    check_options(cls, options)
    return cls(in_channels, scale, guide_channels=guide_channels, **options)
