#!/usr/bin/env python3
"""Check the import rules of src/tidings (run by tests/test_layout.py; exit 1 on a breach).

1. **Pure layers do no I/O.** ``tidings.core``, ``tidings.transport`` and
   ``tidings.wire`` import nothing that does I/O (sockets, files, SQLite,
   processes, threads, clocks, trio), neither directly nor through other
   tidings modules. ``tidings.replication`` follows the same rule, except that
   it works through the store it is given: what ``tidings.storage`` imports is
   the store's business (spec/10 is "pure but for the store").
2. **No import circles** among the modules of src/tidings, counting the
   imports a module runs when it is loaded (at its top level, outside
   ``if TYPE_CHECKING:``) and the package ``__init__`` each import loads.
3. **No private names across packages.** Nothing outside a package imports a
   name that starts with ``_`` from a module of that package.

Usage: ``python tools/check_imports.py [SRC_DIR]`` (default: src/).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PURE = ("tidings.core", "tidings.transport", "tidings.wire")
THROUGH_THE_STORE = ("tidings.replication",)
#: Modules that do I/O, or read the clock: not for the pure layers.
IO_MODULES = frozenset({
    "asyncio", "http", "io", "multiprocessing", "pathlib", "platformdirs", "select",
    "selectors", "shutil", "signal", "socket", "sqlite3", "ssl", "subprocess", "tempfile",
    "threading", "time", "trio", "urllib",
})
#: ``os`` reads and writes files too; the transport may use it for randomness
#: alone (ephemeral keys, beacon nonces: os.urandom).
OS_ALLOWED = ("tidings.transport",)
#: Layers the pure ones must not reach, whatever they import.
EDGE_PACKAGES = ("tidings.node", "tidings.http", "tidings.cli", "tidings.embed", "tidings.sim")


@dataclass
class Module:
    name: str
    path: Path
    #: tidings modules loaded when this one is (top level), with the line.
    loads: dict[str, int] = field(default_factory=dict)
    #: Every tidings module imported anywhere in it (functions too).
    imports: dict[str, int] = field(default_factory=dict)
    #: Top-level names of other libraries imported anywhere in it, with the line.
    external: dict[str, int] = field(default_factory=dict)
    #: (module, private name, line) taken by ``from module import _name``.
    privates: list[tuple[str, str, int]] = field(default_factory=list)


def module_name(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if module.path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def read_module(src: Path, path: Path, known: set[str]) -> Module:
    module = Module(module_name(src, path), path)
    tree = ast.parse(path.read_text(), str(path))

    def visit(nodes: list[ast.stmt], top: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse, top)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    record(alias.name, node.lineno, top)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node)
                if target == "__future__":
                    continue
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    record(candidate if candidate in known else target, node.lineno, top)
                    private = alias.name.startswith("_") and not alias.name.endswith("__")
                    if private and target.startswith("tidings"):
                        module.privates.append((target, alias.name, node.lineno))
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    # Nested statements (functions, classes, try, with, if): an
                    # import inside a function runs later; one in a class, try
                    # or plain if runs at load time.
                    inner_top = top and not isinstance(
                        node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                    visit([child], inner_top)

    def record(name: str, line: int, top: bool) -> None:
        if name.split(".")[0] == "tidings":
            module.imports.setdefault(name, line)
            if top:
                module.loads.setdefault(name, line)
        else:
            module.external.setdefault(name.split(".")[0], line)

    visit(tree.body, True)
    return module


def read_tree(src: Path) -> dict[str, Module]:
    paths = sorted((src / "tidings").rglob("*.py"))
    known = {module_name(src, path) for path in paths}
    return {m.name: m for m in (read_module(src, path, known) for path in paths)}


def _parents(name: str, importer: str) -> list[str]:
    """The packages whose ``__init__`` loading ``name`` runs, but for those around
    ``importer`` (they ran before it) and the root (it runs before everything)."""
    parts = name.split(".")
    own = importer.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts)) if parts[:i] != own[:i]]


def load_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in modules.values():
        edges: set[str] = set()
        for target in module.loads:
            if target in modules and target != "tidings":
                edges.update(p for p in (*_parents(target, module.name), target)
                             if p != module.name)
        graph[module.name] = {e for e in edges if e in modules}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(graph):
            if node not in index:
                connect(node)
    finally:
        sys.setrecursionlimit(limit)
    return cycles


def _in(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def purity_breaches(modules: dict[str, Module]) -> list[str]:
    breaches: list[str] = []
    for module in modules.values():
        if not _in(module.name, PURE + THROUGH_THE_STORE):
            continue
        through_store = _in(module.name, THROUGH_THE_STORE)
        seen: set[str] = set()
        todo = [(module.name, [module.name])]
        while todo:
            name, path = todo.pop()
            if name in seen or name not in modules:
                continue
            seen.add(name)
            current = modules[name]
            for external, line in current.external.items():
                if external in IO_MODULES or (external == "os" and not _in(name, OS_ALLOWED)):
                    breaches.append(f"{module.name}: imports {external} "
                                    f"({' -> '.join(path)}, {current.path.name}:{line})")
            for target, line in current.imports.items():
                if _in(target, EDGE_PACKAGES):
                    breaches.append(f"{module.name}: imports {target} "
                                    f"({' -> '.join(path)}, {current.path.name}:{line})")
                if through_store and _in(target, ("tidings.storage",)):
                    continue  # the store is replication's I/O edge
                todo.append((target, [*path, target]))
    return sorted(set(breaches))


def private_breaches(modules: dict[str, Module]) -> list[str]:
    breaches = []
    for module in modules.values():
        for target, name, line in module.privates:
            package = target.rsplit(".", 1)[0] if target in modules and \
                modules[target].path.name != "__init__.py" else target
            if not (module.name == package or module.name.startswith(package + ".")):
                breaches.append(f"{module.name} ({module.path.name}:{line}) imports the "
                                f"private {name} of {target}")
    return breaches


def check(src: Path) -> list[str]:
    modules = read_tree(src)
    problems = purity_breaches(modules) + private_breaches(modules)
    for cycle in find_cycles(load_graph(modules)):
        problems.append("import circle: " + ", ".join(cycle))
    return problems


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"import rules hold in {src}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
