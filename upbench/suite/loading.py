"""Reading suites: shipped names or TOML files, ``--set`` overrides, validation, and writing TOML back."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from upbench import validation
from upbench.errors import ConfigError
from upbench.files import short_path
from upbench.suite.checks import cell_problems, config_problems
from upbench.suite.expansion import Suite
from upbench.suite.schema import SuiteConfig

SUITE_PACKAGE = "upbench_suites"


def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax (numbers, true/false, [lists], "strings") or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys; ``architectures.0.scales=[4]`` for list items)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: '{part}' is not an index of {'.'.join(parts[:i])}")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise ConfigError(f"--set {key}: '{'.'.join(parts[: i + 1])}' is not a table")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {key}: '{last}' is not an index")
            node[int(last)] = _parse_value(text.strip())
        else:
            node[last] = _parse_value(text.strip())
    return data


def builtin_suites() -> list[str]:
    """Names of the suites shipped in ``suites/``."""
    return sorted(p.name[:-5] for p in resources.files(SUITE_PACKAGE).iterdir() if p.name.endswith(".toml"))


def describe_builtin_suites() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped suite."""
    out = []
    for name in builtin_suites():
        data = tomllib.loads(resources.files(SUITE_PACKAGE).joinpath(f"{name}.toml").read_text())
        out.append((name, str(data.get("suite", {}).get("description", ""))))
    return out


def _read_suite_text(name_or_path: str | Path) -> tuple[str, str]:
    path = Path(name_or_path)
    try:
        if str(name_or_path).endswith(".toml") or path.is_file():
            if not path.is_file():
                raise ConfigError(f"suite file '{path}' does not exist")
            return path.read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError as err:  # the file is named here; the CLI's catch-all could not name it
        byte = f"byte 0x{err.object[err.start]:02x} at position {err.start}"
        raise ConfigError(f"suite file '{short_path(str(path))}' is not UTF-8 text ({byte})") from None
    except OSError as err:
        raise ConfigError(f"suite file '{short_path(str(path))}' cannot be read: {err.strerror or err}") from None
    name = str(name_or_path)
    if name not in builtin_suites():
        import difflib

        close = difflib.get_close_matches(name, builtin_suites(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown suite '{name}'.{hint} Shipped suites: {', '.join(builtin_suites())}; "
            "or give a path to a .toml file"
        )
    return resources.files(SUITE_PACKAGE).joinpath(f"{name}.toml").read_text(), f"{SUITE_PACKAGE}/{name}.toml"


def parse_suite(data: dict[str, Any], source: str = "<dict>") -> SuiteConfig:
    """Validate a suite given as nested dicts (as read from TOML); all problems in one ConfigError."""
    problems: list[str] = []
    cfg = validation.build(SuiteConfig, data, "", problems)
    problems += config_problems(cfg)
    validation.raise_if(list(dict.fromkeys(problems)), ConfigError)
    return cfg


def load_suite(
    name_or_path: str | Path,
    overrides: Iterable[str] = (),
    only: Iterable[str] = (),
    *,
    device: str | None = None,
    check_data: bool = True,
) -> Suite:
    """Load a shipped suite by name or a user's TOML file, apply ``--set`` overrides and validate.

    With ``device``, also run the checks of :func:`upbench.suite.checks.cell_problems` (datasets built, every distinct
    operator configuration built on the meta device, ``--only`` filters), so that ``plan`` and
    ``run`` list every problem before any cell runs (``check_data=False`` leaves the dataset on
    disk out: :func:`upbench.suite.checks.data_problems`). Problems raise one :class:`ConfigError`
    with one line each.
    """
    text, source = _read_suite_text(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"suite file {source} is not valid TOML: {err}") from None
    data = apply_overrides(data, overrides)
    problems: list[str] = []
    cfg = validation.build(SuiteConfig, data, "", problems)
    problems += config_problems(cfg)
    suite = Suite(cfg, data, source, list(only))
    if device is not None and not problems:  # the cell-level checks need a valid configuration
        problems += cell_problems(suite, device, check_data=check_data)
    validation.raise_if(list(dict.fromkeys(problems)), ConfigError)
    return suite


def dump_toml(data: dict[str, Any]) -> str:
    """Serialise nested dicts of scalars/lists (a suite) as TOML (tables and arrays of tables)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {scalar(x)}" for k, x in v.items()) + "}"
        raise ConfigError(f"cannot write {v!r} to TOML")

    lines: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        simple = {
            k: v
            for k, v in d.items()
            if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))
        }
        if prefix and (simple or not d):
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{json.dumps(k) if not k.isidentifier() else k} = {scalar(v)}" for k, v in simple.items())
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                table(name, v)
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for item in v:
                    lines.append(f"\n[[{name}]]")
                    lines.extend(f"{k2} = {scalar(v2)}" for k2, v2 in item.items())

    table("", data)
    return "\n".join(lines).lstrip() + "\n"
