"""The one validator of option and configuration values: annotations in, problems out.

Every configurable thing in upbench (suite tables, :class:`~upbench.training.TrainConfig`,
:class:`~upbench.metrics.MetricOptions`, operator constructor options) declares its values with
type annotations; this module checks a value against such an annotation and returns *all* the
problems as readable one-line messages, so that the CLI can list every bad input at once.

Understood annotations: ``int``, ``float`` (finite; an int is accepted), ``bool``, ``str``,
``Literal[...]``, ``X | None``, ``list[X]``, ``tuple[X, ...]`` / ``tuple[X, Y]``, ``dict[...]``
(a table), ``Any``, nested dataclasses, and ``Annotated[X, Bounds(...)]`` for ranges (the aliases
below). A new field or option with one of these annotations is checked with no extra code.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class Bounds:
    """Range metadata for ``Annotated[int | float, Bounds(...)]``: ``ge``/``gt``/``le`` and oddness."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    odd: bool = False

    def problem(self, value: Any) -> str:
        """Empty if ``value`` is within the bounds, else what it must be."""
        if self.ge is not None and value < self.ge:
            return f">= {_number(self.ge)}"
        if self.gt is not None and not value > self.gt:
            return f"> {_number(self.gt)}"
        if self.le is not None and value > self.le:
            return f"<= {_number(self.le)}"
        if self.odd and value % 2 != 1:
            return "odd"
        return ""

    def text(self) -> str:
        parts = [f"{op} {_number(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le)) if v is not None]
        return " and ".join(parts + (["odd"] if self.odd else []))


def _number(bound: float) -> str:
    """A bound as text: integers in full (a seed's 4294967295, not 4.29497e+09), floats short."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


PositiveInt = Annotated[int, Bounds(ge=1)]
NonNegativeInt = Annotated[int, Bounds(ge=0)]
OddPositiveInt = Annotated[int, Bounds(ge=1, odd=True)]
PositiveFloat = Annotated[float, Bounds(gt=0)]
NonNegativeFloat = Annotated[float, Bounds(ge=0)]
Fraction = Annotated[float, Bounds(ge=0, le=1)]
#: A random seed: numpy's legacy ``np.random.seed`` takes 0 <= seed < 2**32 and torch's
#: ``manual_seed`` at most 2**64 - 1 (upbench derives seeds as ``seed * 1_000_003 + epoch``, which
#: stays below that for any seed numpy takes); a larger seed would fail once a cell starts.
Seed = Annotated[int, Bounds(ge=0, le=2**32 - 1)]


def describe(tp: Any) -> str:
    """A short human description of the annotation ``tp`` ("a positive integer", "'a' or 'b'")."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        bounds = [m.text() for m in meta if isinstance(m, Bounds)]
        return f"{describe(base)} {' and '.join(bounds)}".strip()
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(tp))
    if origin is list:
        return f"a list of ({describe(get_args(tp)[0])})"
    if origin is tuple:
        return "a list of " + ", ".join(describe(a) for a in get_args(tp) if a is not Ellipsis)
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a table"
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string", type(None): "None"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _scalar(value: Any, tp: Any) -> tuple[bool, Any]:
    """``(ok, coerced)`` for the plain types; unknown types pass unchanged."""
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if tp is type(None):
        return value is None, value
    return True, value


def validate(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    """Check ``value`` against annotation ``tp``; append one line per problem; return the coerced value.

    Nested dataclasses are built from tables (see :func:`build`); a bad value is returned as is.
    """
    origin = get_origin(tp)
    shown = f"{where} = {value!r}"
    if tp is Any or tp is None:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # an instance checked its own fields when it was built
            return value
        if not isinstance(value, dict):
            problems.append(f"{where} must be a table, got {value!r}")
            return tp()
        return build(tp, value, where, problems)
    if origin is Annotated:
        base, *meta = get_args(tp)
        trial: list[str] = []
        value = validate(value, base, where, trial)
        bad = bool(trial) or any(isinstance(m, Bounds) and m.problem(value) for m in meta)
        if bad:
            problems.append(f"{shown} is not valid; it must be {describe(tp)}")
        return value
    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool) != any(isinstance(a, bool) for a in get_args(tp)):
            problems.append(f"{shown} is not valid; choose one of {', '.join(map(repr, get_args(tp)))}")
        return value
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            trial: list[str] = []
            coerced = validate(value, arg, where, trial)
            if not trial:
                return coerced
        problems.append(f"{shown} is not valid; it must be {describe(tp)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            problems.append(f"{shown} is not valid; it must be {describe(tp)}")
            return value
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                problems.append(f"{shown} is not valid; it must be {describe(tp)}")
                return value
            return tuple(validate(v, a, f"{where}[{i}]", problems) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [validate(v, item, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where} must be a table, got {value!r}")
            return {}
        return dict(value)
    ok, coerced = _scalar(value, tp)
    if not ok:
        problems.append(f"{shown} is not valid; it must be {describe(tp)} (got {type(value).__name__})")
    return coerced


def field_types(cls: type) -> dict[str, Any]:
    """``name -> annotation`` (with ``Annotated`` bounds) of the fields of dataclass ``cls``."""
    hints = get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def unknown_keys(data: dict[str, Any], valid: list[str] | dict[str, Any], where: str) -> list[str]:
    """One problem line per key of ``data`` that is not in ``valid`` (with a close match if any)."""
    import difflib

    out = []
    for key in sorted(set(data) - set(valid)):
        close = difflib.get_close_matches(str(key), list(valid), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        out.append(f"unknown key '{key}' in {where or 'the suite'}{hint}; valid keys: {', '.join(valid) or 'none'}")
    return out


def build(cls: type, data: dict[str, Any], where: str, problems: list[str]) -> Any:
    """Build dataclass ``cls`` from ``data``; bad or unknown keys become problems (defaults are kept)."""
    types_ = field_types(cls)
    problems += unknown_keys(data, list(types_), where)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            continue
        n = len(problems)
        coerced = validate(value, types_[key], f"{where}.{key}" if where else key, problems)
        if len(problems) == n:
            kwargs[key] = coerced
    return cls(**kwargs)


def check_fields(obj: Any, where: str) -> list[str]:
    """Problems of the current field values of dataclass instance ``obj`` (for ``__post_init__``)."""
    problems: list[str] = []
    for name, tp in field_types(type(obj)).items():
        validate(getattr(obj, name), tp, f"{where}.{name}" if where else name, problems)
    return problems


def raise_if(problems: list[str], error: Callable[[str], Exception]) -> None:
    """Raise ``error`` with one line per problem (nothing if there are none)."""
    if problems:
        raise error("\n".join(problems))


def require(value: Any, tp: Any, where: str, error: Callable[[str], Exception]) -> Any:
    """Check one value (e.g. an operator option in its constructor); raise ``error`` if bad."""
    problems: list[str] = []
    value = validate(value, tp, where, problems)
    raise_if(problems, error)
    return value
