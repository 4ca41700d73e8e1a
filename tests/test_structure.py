"""The shape of the code: no import circle, dependencies one way, no module over 500 lines.

The import graph is read from the source (every ``import`` and ``from ... import``, also inside
functions and ``TYPE_CHECKING`` blocks) of ``upbench/`` and ``operators/`` (``upbench_operators``);
an edge goes to the most specific module named (``from upbench import results`` is an edge to
``upbench.results``). Layers, top to bottom; a module may import its own layer or lower ones:

    cli -> driver (and reporting, cost, audit, pretraining) -> suite -> executors -> cell
        -> parts (architectures, training, metrics, profiling, data, registries, operators) -> core
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"upbench": ROOT / "upbench", "upbench_operators": ROOT / "operators"}
MAX_LINES = 500

#: (layer, modules: each one and its sub-modules; "upbench" is the package's own __init__ only).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("upbench.cli", "upbench.__main__")),
    ("driver", ("upbench.driver", "upbench.cost", "upbench.reporting", "upbench.audit", "upbench.pretraining")),
    ("suite", ("upbench.suite",)),
    ("executors", ("upbench.executors",)),
    ("cell", ("upbench.cell",)),
    (
        "parts",
        (
            "upbench",
            "upbench.architectures",
            "upbench.training",
            "upbench.metrics",
            "upbench.profiling",
            "upbench.data",
            "upbench.registry",
            "upbench.deployment",
            "upbench.testing",
            "upbench_operators",
        ),
    ),
    ("core", ("upbench.errors", "upbench.validation", "upbench.results", "upbench.runlock", "upbench.plugins",
              "upbench.upsampler", "upbench.files")),
)  # fmt: skip


def modules_of(packages: dict[str, Path]) -> dict[str, Path]:
    """``dotted name -> file`` of every module of ``packages`` (``name -> folder``)."""
    out = {}
    for name, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [name, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph(packages: dict[str, Path]) -> dict[str, dict[str, str]]:
    """``module -> {imported module: "file:line" of the first such import}`` within ``packages``."""
    modules = modules_of(packages)
    top = next(iter(packages.values())).parent  # locations are shown relative to it

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, str]] = {m: {} for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [known(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base) for a in node.names]
            else:
                continue
            for target in targets:
                if target and target != module:
                    graph[module].setdefault(target, f"{path.relative_to(top)}:{node.lineno}")
    return graph


def circles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int | None:
    """Index of ``module``'s layer in :data:`LAYERS` (the longest matching entry), None if none."""
    best: tuple[int, int] | None = None
    for i, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            matches = module == entry or (entry != "upbench" and module.startswith(entry + "."))
            if matches and (best is None or len(entry) > best[1]):
                best = (i, len(entry))
    return None if best is None else best[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, str]]:
    return import_graph(PACKAGES)


def test_no_import_circle(graph) -> None:
    problems = []
    for component in circles(graph):
        edges = [f"    {a} -> {b} ({graph[a][b]})" for a in component for b in sorted(graph[a]) if b in component]
        problems.append(f"circle of {len(component)} modules:\n" + "\n".join(edges))
    assert not problems, "\n".join(problems)


def test_dependencies_run_one_way(graph) -> None:
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"add these modules to a layer in LAYERS: {unplaced}"
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]}) at {where}"
        for a, targets in graph.items()
        for b, where in targets.items()
        if layer_of(b) < layer_of(a)
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_module_over_500_lines() -> None:
    long = {
        f"{path.relative_to(ROOT)}": n
        for path in modules_of(PACKAGES).values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_the_graph_sees_circles_through_function_level_and_relative_imports(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import c\n")
    (pkg / "c.py").write_text("import pkg.a as a\n")
    graph = import_graph({"pkg": pkg})
    assert graph["pkg.a"] == {"pkg.sub.b": "pkg/a.py:2"}
    assert graph["pkg.sub.b"] == {"pkg.c": "pkg/sub/b.py:1"}
    assert circles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert layer_of("upbench.suite.checks") > layer_of("upbench.driver") and layer_of("upbench") == layer_of(
        "upbench.metrics.base"
    )
