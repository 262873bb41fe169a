"""Long-term memory fixtures: a MemoryStore on the embedded Postgres (pgvector) and one on the
system PostgreSQL 15 (no pgvector, full-text fallback).

Loaded by ``tests/conftest.py`` through ``pytest_plugins``; uses its ``pg_url`` and
``system_pg_url``. The PG15 store lives in its own throw-away schema, so reruns and other
tests' tables on that server never collide. Nothing here skips.

Both make the schema as a host's start does (:func:`prepare_schema`): the version that
``migrate`` records promises every table, LangGraph's included, so a ``services`` fixture
opened later on the same database must find them all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from langchain_core.embeddings import Embeddings

from stores.memory.store import MemoryStore
from stores.postgres.migrations import migrate
from stores.postgres.savers import has_pgvector, make_checkpointer, make_store, open_pool

DIMS = 384


async def prepare_schema(pool: Any, embeddings: Embeddings | None, dims: int = DIMS) -> list[int]:
    """LangGraph's saver and store tables, then Mnemograph's migrations (as ``open_services``
    does on a first start); returns the migrations applied."""
    pgvector = await has_pgvector(pool)
    await make_checkpointer(pool)
    await make_store(pool, embeddings=embeddings if pgvector else None, dims=dims)
    return await migrate(pool, dims=dims, pgvector=pgvector)


@pytest.fixture(scope="session")
def minilm() -> Embeddings:
    """The default local embedder (packaged MiniLM, int8 ONNX), loaded once."""
    from stores.models.minilm_onnx import OnnxMiniLM
    from stores.settings import Settings

    return OnnxMiniLM(Settings().model_cache_dir, threads=1)


@pytest.fixture(scope="session")
async def memory_store(pg_url: str, minilm: Embeddings) -> AsyncIterator[MemoryStore]:
    pool = await open_pool(pg_url, max_size=4)
    await prepare_schema(pool, minilm)
    store = MemoryStore(pool, minilm, dims=DIMS)
    await store.setup()
    yield store
    await pool.close()


@pytest.fixture(scope="session")
def fts_schema(system_pg_url: str) -> Iterator[str]:
    """A fresh schema on the system PG15, dropped at the end of the session."""
    schema = f"mnemo_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(system_pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield schema
    with psycopg.connect(system_pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="session")
async def fts_memory_store(
    system_pg_url: str, fts_schema: str, minilm: Embeddings
) -> AsyncIterator[MemoryStore]:
    """MemoryStore on PG15 without pgvector: embeddings are configured but cannot be used."""
    sep = "&" if "?" in system_pg_url else "?"
    pool = await open_pool(f"{system_pg_url}{sep}options=-csearch_path%3D{fts_schema}")
    await prepare_schema(pool, minilm)
    store = MemoryStore(pool, minilm, dims=DIMS)
    await store.setup()
    yield store
    await pool.close()
