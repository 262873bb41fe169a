"""Knowledge-graph fixtures: one embedded ArcadeDB per test session, a GraphStore on it, an
outbox on the embedded Postgres, and a Bolt URL that nothing listens on.

Loaded by ``tests/conftest.py`` through ``pytest_plugins``. The server lives in
``<data_dir>/arcadedb`` (``Settings.graph_data_dir``), so ``open_services`` in the same
session joins it instead of starting a second JVM. Nothing here skips: a server that cannot
start fails the run with its log path.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from stores.knowledge.arcadedb import EmbeddedGraphServer, free_port, start_arcadedb
from stores.knowledge.bolt import GraphStore
from stores.knowledge.outbox import TABLE, GraphOutbox
from stores.postgres.savers import open_pool


@pytest.fixture(scope="session")
def graph_server(data_dir: Path) -> Iterator[EmbeddedGraphServer]:
    server = start_arcadedb(data_dir / "arcadedb")
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def graph_store(graph_server: EmbeddedGraphServer) -> AsyncIterator[GraphStore]:
    store = await GraphStore.open(
        graph_server.uri, graph_server.user, graph_server.password, graph_server.database
    )
    await store.setup()
    yield store
    await store.close()


@pytest.fixture
async def dead_graph_store() -> AsyncIterator[GraphStore]:
    """A GraphStore pointed at a closed port: every call raises ServiceUnavailable fast."""
    store = await GraphStore.open(
        f"bolt://127.0.0.1:{free_port()}",
        "root",
        "unused",
        "graph",
        connect_timeout_s=1.0,
        op_timeout_s=2.0,
    )
    yield store
    await store.close()


@pytest.fixture(scope="session")
async def kg_pool(pg_url: str) -> AsyncIterator[Any]:
    pool = await open_pool(pg_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def outbox(kg_pool: Any) -> GraphOutbox:
    """The outbox table, emptied so replay tests only see their own rows."""
    box = GraphOutbox(kg_pool)
    await box.setup()
    async with kg_pool.connection() as conn:
        await conn.execute(f"DELETE FROM {TABLE}")
    return box


@pytest.fixture
def kg_user() -> str:
    """A fresh user id per test: graph tests never see each other's facts."""
    return f"kg-{uuid.uuid4().hex[:12]}"
