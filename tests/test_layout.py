"""The package's layout stays readable: no import circle, and each room imports only what it may.

The modules are parsed with ``ast``, never imported, so a broken or slow module cannot hide an
edge. Every import counts: at module level, inside functions, and under ``if TYPE_CHECKING:`` (a
circle of types is still a circle a reader must hold in their head).

How an import becomes an edge:
- ``import gce.a.b`` and ``from gce.a import b`` (``b`` a module) are edges to ``gce.a.b``;
  ``from gce.a import name`` (``name`` not a module) is an edge to ``gce.a``.
- Importing ``gce.a.b`` runs ``gce/a/__init__.py`` first, but that is Python's doing, not the
  reader's: no edge is drawn from a module to its parent package. So a package's ``__init__`` that
  re-exports its submodules (``gce/sdk/__init__.py`` names them under ``TYPE_CHECKING`` and loads
  them lazily) is not a circle by itself. It becomes one only when a submodule imports back from
  its package (``from gce.sdk import Executor`` inside ``gce/sdk/``): the submodule then depends
  on a re-export of a sibling, which is a circle through the package, and is reported.
- ``importlib.import_module("gce.x")`` with a string is not seen (gce/sdk/__init__.py loads its
  own submodules that way; the ``TYPE_CHECKING`` imports beside it are counted).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gce"


@dataclass(frozen=True)
class Import:
    """One import statement's edge: which module imports which, where."""

    source: str  # the importing module, dotted
    target: str  # the imported gce module, dotted
    path: Path
    line: int
    text: str  # the statement as written

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def gce_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(source: str, path: Path, node: ast.ImportFrom) -> str:
    """The dotted module a ``from`` statement names, with relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(source: str, path: Path, modules: Iterable[str]) -> Iterator[Import]:
    known = set(modules)
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(source, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        else:
            continue
        text = " ".join(line.strip() for line in lines[node.lineno - 1:node.end_lineno or node.lineno])
        for target in dict.fromkeys(targets):
            # ``import gce.a.b.c`` of a name that is not a module (rare) counts as its module.
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != source:
                yield Import(source, target, path, node.lineno, text)


def all_imports() -> list[Import]:
    modules = gce_modules()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def circles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e.target)
        graph.setdefault(e.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def describe_circle(component: list[str], edges: list[Import]) -> str:
    inside = set(component)
    lines = [f"import circle between {', '.join(component)}:"]
    for e in sorted(edges, key=lambda e: (e.source, e.line)):
        if e.source in inside and e.target in inside:
            lines.append(f"  {e.where()}: {e.source} imports {e.target}: {e.text}")
    return "\n".join(lines)


def in_room(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


# (rule, who it applies to, what it may not import, the allowed exception, why)
RULES: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = [
    ("the endpoint does not import the client library", ("gce.daemon", "gce.uep"), ("gce.sdk",), (),
     "the manager and user endpoints must run without the SDK; shared code such as the wire format "
     "lives in gce.transport, which both sides import"),
    ("commands read the daemon through its client only", ("gce.commands",), ("gce.daemon",), ("gce.daemon.client",),
     "a command talks to a running endpoint through gce.daemon.client; the daemon's internals may "
     "change without touching any command"),
    ("the transport stands alone", ("gce.transport",), ("gce.daemon", "gce.commands", "gce.sdk", "gce.uep"), (),
     "gce.transport is the layer every side builds on, so it may not import any of them"),
]


def rule_breaches(edges: list[Import]) -> list[str]:
    breaches = []
    for rule, rooms, forbidden, allowed, why in RULES:
        for e in edges:
            if not any(in_room(e.source, r) for r in rooms):
                continue
            if any(in_room(e.target, f) for f in forbidden) and e.target not in allowed:
                breaches.append(f"{e.where()}: {e.text}\n  rule: {rule}: {e.source} may not import {e.target}; "
                                f"{why}")
    return breaches


def test_the_parser_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks below are only as good as the edges: module level, in functions, relative,
    under TYPE_CHECKING, and ``from package import submodule``."""
    pkg = tmp_path / "gce"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from gce.a.b import thing\n")
    (pkg / "a" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gce import c\n"
        "def f():\n    from . import d\n    import gce.a.d as dd\n")
    (pkg / "c.py").write_text("from gce.a import thing\n")
    (pkg / "a" / "d.py").write_text("from .b import f\n")
    names = {module_name(p, tmp_path): p for p in pkg.rglob("*.py")}
    assert set(names) == {"gce", "gce.a", "gce.a.b", "gce.a.d", "gce.c"}
    edges = {(i.source, i.target) for name, path in names.items() for i in imports_of(name, path, names)}
    assert edges == {("gce.a", "gce.a.b"), ("gce.a.b", "gce.c"), ("gce.a.b", "gce.a.d"), ("gce.c", "gce.a"),
                     ("gce.a.d", "gce.a.b")}
    graph = [Import(s, t, Path(), 0, "") for s, t in edges]
    assert circles(graph) == [["gce.a", "gce.a.b", "gce.a.d", "gce.c"]]


def test_no_import_circle() -> None:
    edges = all_imports()
    found = circles(edges)
    assert not found, ("modules that import each other, directly or around a ring, must be untangled "
                       "(move the shared part to a module both import):\n\n"
                       + "\n\n".join(describe_circle(c, edges) for c in found))


def test_each_room_imports_only_what_it_may() -> None:
    breaches = rule_breaches(all_imports())
    assert not breaches, "imports that cross a room's wall:\n" + "\n".join(breaches)
