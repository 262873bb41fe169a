"""Layers import one way (DESIGN.md sec. 2): a walk over every import of the product code.

Order, lowest first:

* basics: ``stores.errors``, ``stores.ids``, ``stores.settings``;
* domain: pure rules and interfaces both sides share: ``graph.facts`` (what a fact is),
  ``graph.budget`` (fitting recalled lines to a token budget),
  ``graph.ports`` (what the nodes need, as Protocols), ``stores.pii``;
* adapters: the rest of ``stores/`` (never the state machine or the hosts);
* the state machine: ``graph/`` and ``nodes/``, which reach storage through the ports only;
  nodes never import ``stores/`` at all, not even its basics;
* the application: ``mnemograph/`` (services, runner, lifecycle, web, CLI);
* the host: ``server.py``.

Function-level imports count too: they hide loops, they do not break them. There are no
exceptions: the test fails on any import against the order.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("graph", "nodes", "stores", "mnemograph")

BASICS, DOMAIN, ADAPTERS, MACHINE, APPLICATION, HOST = range(6)
RANKS: dict[str, int] = {
    "stores.errors": BASICS,
    "stores.ids": BASICS,
    "stores.settings": BASICS,
    "graph.budget": DOMAIN,
    "graph.facts": DOMAIN,
    "graph.ports": DOMAIN,
    "stores.pii": DOMAIN,
    "server": HOST,
}
FOLDERS = {"stores": ADAPTERS, "graph": MACHINE, "nodes": MACHINE, "mnemograph": APPLICATION}
MAY_IMPORT: dict[int, frozenset[int]] = {
    BASICS: frozenset({BASICS}),
    DOMAIN: frozenset({BASICS, DOMAIN}),
    ADAPTERS: frozenset({BASICS, DOMAIN, ADAPTERS}),
    MACHINE: frozenset({BASICS, DOMAIN, MACHINE}),
    APPLICATION: frozenset({BASICS, DOMAIN, ADAPTERS, MACHINE, APPLICATION}),
    HOST: frozenset(range(6)),
}


def rank(module: str) -> int | None:
    """The layer of a product module (None for third-party modules)."""
    for name in (module, module.rsplit(".", 1)[0], module.split(".")[0]):
        if name in RANKS:
            return RANKS[name]
    return FOLDERS.get(module.split(".")[0])


def modules() -> dict[str, Path]:
    found = {"server": ROOT / "server.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def against_the_order() -> set[tuple[str, str]]:
    known_modules = modules()
    bad: set[tuple[str, str]] = set()
    for name, path in known_modules.items():
        mine = rank(name)
        assert mine is not None, name
        for target in imports(path):
            if target not in known_modules:
                continue  # third-party, or a name imported from a module (counted as it)
            theirs = rank(target)
            if theirs is not None and theirs not in MAY_IMPORT[mine]:
                bad.add((name, target))
    return bad


def test_layers_import_one_way() -> None:
    assert against_the_order() == set(), "imports against the layer order (DESIGN.md sec. 2)"


def test_nodes_import_nothing_from_stores() -> None:
    """Nodes are functions of (state, runtime) that reach storage through ports only."""
    found = {
        (name, target)
        for name, path in modules().items()
        if name.startswith("nodes")
        for target in imports(path)
        if target == "stores" or target.startswith("stores.")
    }
    assert found == set()


def test_the_walk_sees_every_layer() -> None:
    """A walk that found no modules (a moved folder) would pass vacuously."""
    ranks = {rank(name) for name in modules()}
    assert ranks == set(range(6))
