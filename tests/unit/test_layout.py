"""The shape of the code: every module imports, and no two modules import each other (directly or round a loop).

The import graph is read with `ast` from the source, imports inside functions
included (a lazy import is still a dependency), so a cycle is caught even where
Python would tolerate it at run time.  Rules added later (module size, private
attributes) go next to `import_graph` as more functions over the same parsed modules.
"""

from __future__ import annotations

import ast
import importlib
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("tracer", "webapp")


def modules(packages=PACKAGES) -> dict:
    """Dotted module name -> its source path, for every .py file of the packages."""
    found = {}
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(REPO, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                if dotted.endswith(".__init__"):
                    dotted = dotted[: -len(".__init__")]
                found[dotted] = path
    return found


def parse(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (`from ..x import y` inside module)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: str, known: dict) -> set:
    """The project modules `module` imports anywhere in its source (top level or inside functions)."""
    is_package = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            # `from pkg import name` imports the submodule pkg.name when there is one.
            names = [target + "." + alias.name if target + "." + alias.name in known else target
                     for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` depends on the deepest project module it names.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def import_graph(packages=PACKAGES) -> dict:
    known = modules(packages)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycles(graph: dict) -> list:
    """Every strongly connected set of two or more modules (Tarjan), each as a sorted list."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "modules that import each other (break the loop with a narrower module): %s" % cycles


def test_cycle_finder_sees_a_loop_through_a_lazy_import():
    """The checker itself: a loop closed only by an import inside a function is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from ..graph import model\n")
    node = tree.body[0].body[0]
    assert _resolve("tracer.graph.joins", False, node) == "tracer.graph"


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_imports(module):
    importlib.import_module(module)
