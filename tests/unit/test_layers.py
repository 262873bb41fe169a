"""Layers import one way (DESIGN.md sec. 2): a walk over every import of the product code.

Order, lowest first: basics (errors, ids, settings) <- domain rules (knowledge rules, PII)
<- adapters in ``stores/`` (beside the domain rules, never importing the graph, the nodes or
the hosts) <- the state machine (``graph/``, ``nodes/``) <- application (turn runner,
lifecycle, services, web, CLI) <- ``server.py``. Function-level imports count too: they hide
loops, they do not break them.

``KNOWN`` lists the imports that go against the order today, each a debt of the
restructuring (issue 13). The test fails on any import against the order that is not listed,
and on a listed one that no longer exists, so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("graph", "nodes", "stores", "web", "cli")

BASICS, DOMAIN, ADAPTERS, MACHINE, APPLICATION, HOST = range(6)
RANKS: dict[str, int] = {
    "stores.errors": BASICS,
    "stores.ids": BASICS,
    "stores.settings": BASICS,
    "graph.kg": DOMAIN,
    "stores.pii": DOMAIN,
    "graph.agent": APPLICATION,
    "stores.services": APPLICATION,
    "stores.lifecycle": APPLICATION,
    "stores.retention": APPLICATION,
    "web": APPLICATION,
    "cli": APPLICATION,
    "server": HOST,
}
FOLDERS = {"stores": ADAPTERS, "graph": MACHINE, "nodes": MACHINE}
MAY_IMPORT: dict[int, frozenset[int]] = {
    BASICS: frozenset({BASICS}),
    DOMAIN: frozenset({BASICS, DOMAIN}),
    ADAPTERS: frozenset({BASICS, DOMAIN, ADAPTERS}),
    # The state machine reaches storage through ports, never the adapters themselves.
    MACHINE: frozenset({BASICS, DOMAIN, MACHINE}),
    APPLICATION: frozenset({BASICS, DOMAIN, ADAPTERS, MACHINE, APPLICATION}),
    HOST: frozenset(range(6)),
}

KNOWN: frozenset[tuple[str, str]] = frozenset(
    {
        ("nodes.call_model", "stores.services"),
        ("nodes.extract_knowledge", "stores.llm"),
        ("nodes.extract_knowledge", "stores.outbox"),
        ("nodes.extract_knowledge", "stores.services"),
        ("nodes.load_memory", "stores.memory_store"),
        ("nodes.load_memory", "stores.services"),
        ("nodes.summarize", "stores.services"),
        ("nodes.write_memory", "stores.llm"),
        ("nodes.write_memory", "stores.services"),
        ("stores.graph_services", "stores.services"),
    }
)


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
    found = against_the_order()
    assert found - KNOWN == set(), "imports against the layer order (DESIGN.md sec. 2)"
    assert KNOWN - found == set(), "fixed: remove these from KNOWN"
