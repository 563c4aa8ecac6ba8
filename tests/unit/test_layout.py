"""The shape of the code, checked on every run (the unit lane, so CI and laptops alike):

- every module imports, and no two modules import each other, directly or round a
  loop (imports inside functions included: a lazy import is still a dependency);
- the layers of the pipeline only look down: kernel/events/host/containers know
  nothing of the model, the model nothing of history, service, commands or the web;
- no module is over MAX_LINES lines, except the few in OVERSIZE, each with its reason;
- no module reaches into another module's private attributes (`thing._name`);
- exit codes come from tracer/exitcodes.py only.

Everything is read with `ast` from the source, not imported, so a rule is checked
even where Python would tolerate a breach at run time.  Each rule has a test of the
checker itself on a small made-up case, so a checker that cannot fail is caught too.
"""

from __future__ import annotations

import ast
import functools
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


@functools.lru_cache(maxsize=None)
def parse(path: str) -> ast.Module:
    """The module's syntax tree (read once per run: several rules walk it; none changes it)."""
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


# -- layers: the pipeline only looks down --

# Each package (or top-level module) of tracer/ and webapp/ and its layer: a module may
# import from its own layer and the ones below, never from above.  The tree reads as the
# pipeline: kernel -> events -> graph -> history -> service -> commands / web.
LAYERS = (
    # vocabulary shared by everything
    ("tracer.nstypes", "tracer.exitcodes", "tracer.text", "tracer.malloc"),
    # the edges: the kernel and its event records (kernel.collector decodes with events,
    # events.decode reads kernel.abi's layout: one layer), /proc, containers
    ("tracer.kernel", "tracer.events", "tracer.host", "tracer.containers"),
    ("tracer.graph",),
    ("tracer.history",),
    ("tracer.health", "tracer.service", "tracer.event_tags", "tracer.zombie_watch", "tracer.maintenance"),
    # the fleet: the agent runs the service; the dashboard's replicas are graphs
    ("tracer.fleet",),
    ("tracer.commands", "tracer.cli"),
    # the web layer: the core never imports it (tracer.cli registers `serve` and
    # `demo-image` by module name, so that the core runs without Flask)
    ("webapp", "webapp.config", "webapp.contract", "webapp.auth", "webapp.metrics", "webapp.stream",
     "webapp.demos", "webapp.api"),
    ("webapp.commands",),
)


def layer_of(module: str, layers=LAYERS) -> int:
    """The layer of the longest LAYERS entry that is the module or a package holding it."""
    best, found = -1, None
    for depth, names in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), depth
    if found is None:
        raise AssertionError("%s is in no layer: add it to LAYERS in %s" % (module, __file__))
    return found


def upward_imports(graph: dict, layers=LAYERS) -> list:
    return sorted("%s imports %s" % (module, target) for module, targets in graph.items()
                  for target in targets if layer_of(target, layers) > layer_of(module, layers))


def test_layers_only_import_downwards():
    upward = upward_imports(import_graph())
    assert not upward, ("a lower layer imports a higher one (see LAYERS; give the lower layer a "
                        "parameter or a callback instead): %s" % upward)


def test_layer_check_sees_an_upward_import():
    layers = (("low",), ("high",))
    assert upward_imports({"low.a": {"high.b"}, "high.b": {"low.c"}}, layers) == ["low.a imports high.b"]
    assert layer_of("webapp.demos.manager") > layer_of("tracer.commands.trace") > layer_of("tracer.graph.model")


# -- module size --

MAX_LINES = 400
SOURCE_SUFFIXES = (".py", ".js")
# Modules allowed over MAX_LINES, each with the reason.  An entry that is no longer over
# the limit fails test_oversize_list_is_current: take it off when a module shrinks.
OVERSIZE = {}


def line_counts(packages=PACKAGES) -> dict:
    """Repository-relative path -> number of lines, for every .py and .js file of the packages."""
    counts = {}
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(REPO, package)):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "node_modules"))
            for name in sorted(files):
                if name.endswith(SOURCE_SUFFIXES):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as f:
                        counts[os.path.relpath(path, REPO)] = sum(1 for _ in f)
    return counts


def oversize(counts: dict, allowed: dict, limit: int = MAX_LINES) -> tuple:
    """(modules over the limit and not allowed, allowed modules no longer over it)."""
    too_long = sorted("%s (%d lines)" % (p, n) for p, n in counts.items() if n > limit and p not in allowed)
    stale = sorted(p for p in allowed if counts.get(p, 0) <= limit)
    return too_long, stale


def test_no_module_over_the_size_limit():
    too_long, _stale = oversize(line_counts(), OVERSIZE)
    assert not too_long, ("modules over %d lines (split them by job; if one truly must stay whole, add it to "
                          "OVERSIZE with the reason): %s" % (MAX_LINES, too_long))


def test_oversize_list_is_current():
    _too_long, stale = oversize(line_counts(), OVERSIZE)
    assert not stale, "no longer over %d lines: take them off OVERSIZE: %s" % (MAX_LINES, stale)


def test_size_check_sees_both_problems():
    assert oversize({"a.py": 401, "b.py": 400, "c.js": 900}, {"c.js": "why", "d.py": "gone"}) == \
        (["a.py (401 lines)"], ["d.py"])


# -- private attributes --

# (module, "expression._attribute") pairs allowed to reach a private name that is not their
# own, each with the reason.  Like OVERSIZE, an entry that no longer occurs fails a test.
PRIVATE_ALLOWED = {
    ("tracer.host.snapshot", "os._exit"):
        "the documented exit for a forked child: no atexit handlers or buffers of the parent run twice",
}
_ACCESSORS = ("getattr", "setattr", "hasattr", "delattr")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_private_names(tree: ast.Module) -> set:
    """Private names a module defines itself: functions, classes, class attributes, and
    attributes it assigns on self/cls (so another instance of its own class may use them)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    targets = item.targets if isinstance(item, ast.Assign) else \
                        [item.target] if isinstance(item, ast.AnnAssign) else []
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"):
                        names.add(t.attr)
    return {n for n in names if _is_private(n)}


def _is_self(node) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def private_reaches(module: str, tree: ast.Module, project: set) -> list:
    """(module, "expression._name") for each use of another module's private name."""
    own = own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and not _is_self(node.value) \
                and node.attr not in own:
            found.append((module, "%s.%s" % (ast.unparse(node.value), node.attr)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ACCESSORS \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and _is_private(node.args[1].value) \
                and not _is_self(node.args[0]) and node.args[1].value not in own:
            found.append((module, "%s.%s" % (ast.unparse(node.args[0]), node.args[1].value)))
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            source = node.module if not node.level else "." * node.level + node.module
            if node.level or node.module.split(".")[0] in project:
                found.extend((module, "%s.%s" % (source, alias.name)) for alias in node.names
                             if _is_private(alias.name))
    return found


def all_private_reaches() -> set:
    return {reach for name, path in modules().items()
            for reach in private_reaches(name, parse(path), set(PACKAGES))}


def test_no_module_reaches_into_private_attributes():
    reaches = all_private_reaches() - set(PRIVATE_ALLOWED)
    assert not reaches, ("modules using another module's private names (give the owner a narrow public "
                         "method or attribute instead): %s" % sorted(reaches))


def test_private_allow_lists_are_current():
    stale = sorted(set(PRIVATE_ALLOWED) - all_private_reaches())
    assert not stale, "no longer occur: take them off PRIVATE_ALLOWED: %s" % stale


def test_private_check_sees_reaches_and_spares_own_names():
    source = '''
from tracer.graph.model import _helper
from .sibling import _other
import os

class Box:
    _count = 0
    def __init__(self):
        self._items = []
    def merge(self, other):
        self._items += other._items              # its own class's attribute: fine
        super()._reset()                         # the base class's: fine
        return Box._count + len(self.__dict__)   # class attribute, dunder: fine

def poke(graph):
    graph._log.append(1)
    getattr(graph, "_alive")
    os._exit(0)
'''
    reaches = private_reaches("tracer.x", ast.parse(source), {"tracer"})
    assert sorted(r for _m, r in reaches) == [".sibling._other", "graph._alive", "graph._log", "os._exit",
                                              "tracer.graph.model._helper"]


# -- exit codes --

EXIT_CODES_MODULE = "tracer.exitcodes"
# Programs with exit codes of their own: the packages, and the benchmark scripts.
PROGRAMS = PACKAGES + ("bench",)


def entry_points(tree: ast.Module) -> set:
    """Names of the functions whose return value is an exit code: main(), and every
    subcommand's `func` (parser.set_defaults(func=run))."""
    names = {"main"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "set_defaults":
            names.update(k.value.id for k in node.keywords if k.arg == "func" and isinstance(k.value, ast.Name))
    return names


def _is_literal_code(node) -> bool:
    """An exit status spelled as a number (or a message, which exits 1): not a named code."""
    return isinstance(node, ast.Constant) and (isinstance(node.value, (int, str)) and not isinstance(node.value, bool))


def exit_code_problems(module: str, tree: ast.Module) -> list:
    problems = []
    entries = entry_points(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and module != EXIT_CODES_MODULE:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            problems += ["%s defines %s" % (module, t.id) for t in targets
                         if isinstance(t, ast.Name) and t.id.startswith("EXIT_")]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in entries:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return) and inner.value is not None and _is_literal_code(inner.value):
                    problems.append("%s.%s returns %r" % (module, node.name, inner.value.value))
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "exit", "os._exit") \
                and node.args and _is_literal_code(node.args[0]):
            problems.append("%s calls %s" % (module, ast.unparse(node)))
    return problems


def test_exit_codes_come_from_exitcodes():
    problems = [p for name, path in modules(PROGRAMS).items() for p in exit_code_problems(name, parse(path))]
    assert not problems, "use the names in tracer/exitcodes.py (EXIT_OK, EXIT_USAGE...): %s" % problems


def test_exit_code_check_sees_literals_and_second_definitions():
    source = '''
import sys
EXIT_USAGE = 64
def add_parser(sub):
    sub.add_parser("x").set_defaults(func=run)
def run(args):
    if args.bad:
        return 2
    return EXIT_OK
def helper():
    return 0
def main():
    sys.exit("no root")
'''
    assert exit_code_problems("tracer.commands.x", ast.parse(source)) == [
        "tracer.commands.x defines EXIT_USAGE", "tracer.commands.x.run returns 2",
        "tracer.commands.x calls sys.exit('no root')"]
