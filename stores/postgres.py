"""One psycopg pool for the whole process, and the LangGraph checkpointer and store on it."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from langchain_core.embeddings import Embeddings
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from stores.errors import ServiceUnavailable

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """Describe a database URL without its password, for error lines and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if not host and "host=" in parts.query:
        host = parts.query.split("host=", 1)[1].split("&", 1)[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.username or ''}@{host}{port}{parts.path}"


def connection_kwargs(*, pgbouncer: bool = False) -> dict[str, Any]:
    """What the LangGraph Postgres savers require of every connection."""
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "prepare_threshold": None if pgbouncer else 0,
    }


async def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, pgbouncer: bool = False
) -> AsyncConnectionPool[AsyncConnection[dict[str, Any]]]:
    """Open the pool and prove one connection works, so a bad URL fails now, in one line."""
    try:
        probe = await AsyncConnection.connect(url, connect_timeout=5)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason.replace(url, redact_url(url))
        raise ServiceUnavailable(
            "PostgreSQL", f"cannot connect to {redact_url(url)}: {reason}"
        ) from exc
    await probe.close()
    pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
        conninfo=url,
        min_size=min_size,
        max_size=max_size,
        kwargs=connection_kwargs(pgbouncer=pgbouncer),
        open=False,
        timeout=10.0,
    )
    try:
        await pool.open(wait=True, timeout=10.0)
    except Exception as exc:
        await pool.close()
        raise ServiceUnavailable(
            "PostgreSQL", f"cannot connect to {redact_url(url)} ({type(exc).__name__})"
        ) from exc
    return pool


async def has_pgvector(pool: AsyncConnectionPool[Any]) -> bool:
    """Whether semantic search can run on this server (the system PG15 here has no pgvector)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 AS ok FROM pg_available_extensions WHERE name = 'vector'"
        )
        return await cur.fetchone() is not None


async def make_checkpointer(
    pool: AsyncConnectionPool[Any], *, serde: SerializerProtocol | None = None
) -> AsyncPostgresSaver:
    """Build the saver and create its tables; ``setup`` runs on an autocommit connection."""
    saver = AsyncPostgresSaver(conn=pool, serde=serde)
    await saver.setup()
    return saver


async def make_store(
    pool: AsyncConnectionPool[Any], *, embeddings: Embeddings | None, dims: int
) -> AsyncPostgresStore:
    """Build the LangGraph store; with pgvector and embeddings it indexes items' ``text``."""
    index: Any = None
    if embeddings is not None:
        index = {"dims": dims, "embed": embeddings, "fields": ["text"]}
    store = AsyncPostgresStore(conn=pool, index=index)
    await store.setup()
    return store
