"""The process's connections, opened once and handed to the graph through its context.

Hosts (CLI, server, tests, benches) open one ``Services`` with :func:`open_services` and pass
it in ``Context.services``. ``langgraph dev`` runs the module-level graph without a host, so
nodes fall back to :func:`default_services`, built lazily on first use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from stores.errors import MnemographError
from stores.migrations import SCHEMA_VERSION, current_version, record_version
from stores.pg_embedded import start_embedded_postgres
from stores.postgres import has_pgvector, make_checkpointer, make_store, open_pool
from stores.settings import Settings, get_settings
from stores.threads import ThreadRegistry
from stores.users import UserRegistry

if TYPE_CHECKING:
    from stores.graph_store import GraphStore
    from stores.memory_store import MemoryStore
    from stores.outbox import GraphOutbox

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

SETUP_LOCK = 0x6D6E656D6F  # advisory lock key held while creating tables ("mnemo")


@dataclass
class Services:
    """Everything a turn may touch. Optional parts are ``None`` when not configured."""

    settings: Settings
    pool: Pool | None = None
    lock_pool: Pool | None = None
    """Connections that only hold per-thread advisory locks. Kept apart from ``pool`` so
    turns waiting on a lock can never starve the turns holding one of connections."""
    checkpointer: AsyncPostgresSaver | None = None
    store: AsyncPostgresStore | None = None
    threads: ThreadRegistry | None = None
    users: UserRegistry | None = None
    embeddings: Embeddings | None = None
    pgvector: bool = False
    embedded_pg_start_s: float | None = None
    graph: GraphStore | None = None
    """The Bolt knowledge-graph store; ``None`` when no graph server could be opened."""
    outbox: GraphOutbox | None = None
    """Where triples wait while the graph server is down (a Postgres table)."""
    memory: MemoryStore | None = None
    """Long-term memory (hybrid search); ``None`` when a host opened services without it."""
    redact: Callable[[str], str] | None = None
    """PII redactor applied before long-term and graph writes (None when turned off)."""
    _chat_model: BaseChatModel | None = None
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    def chat_model(self) -> BaseChatModel:
        """The chat model, built on first use so commands that need no LLM never start one."""
        if self._chat_model is None:
            from stores.llm import build_chat_model

            self._chat_model = build_chat_model(self.settings, stack=self._stack)
        return self._chat_model

    def set_chat_model(self, model: BaseChatModel) -> None:
        """Inject a model (tests, benches, hosts that own their model)."""
        self._chat_model = model


def _single_threaded_blas() -> None:
    """Run numpy's BLAS on the calling thread only.

    Recall multiplies one vector by a few thousand entity vectors: microseconds of work.
    OpenBLAS still wakes its worker pool for it, and the workers then spin waiting for
    more; measured here they burned 57 ms of CPU per turn, more than the rest of the
    process together, on a 2-core box that also runs Postgres and the graph server.
    """
    import numpy  # noqa: F401 - loads the BLAS library, so there is a pool to limit
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@asynccontextmanager
async def open_services(
    settings: Settings | None = None,
    *,
    chat_model: BaseChatModel | None = None,
    embeddings: Embeddings | None = None,
    with_embeddings: bool = True,
    with_memory: bool = True,
    with_graph: bool = True,
    migrate: bool = False,
) -> AsyncIterator[Services]:
    """Open Postgres (embedded unless ``DATABASE_URL``), set up every table once, and yield.

    Tables are created only when the database's recorded schema version is behind this
    code's (``stores.migrations``), or with ``migrate``; a start on a current schema runs no
    DDL. ``setup()`` runs here, once per process, on autocommit connections, never inside a
    transaction and never on the per-turn path.
    """
    settings = settings or get_settings()
    _single_threaded_blas()
    services = Services(settings=settings)
    if settings.pii_redaction:
        from stores.pii import redact

        services.redact = redact
    if chat_model is not None:
        services.set_chat_model(chat_model)
    async with services._stack:
        url: str
        if settings.database_url is not None:
            url = settings.database_url.get_secret_value()
        else:
            embedded = await asyncio.to_thread(
                start_embedded_postgres,
                settings.pg_data_dir,
                keep_running=settings.embedded_pg_keep_running,
            )
            services.embedded_pg_start_s = embedded.started_in_s
            url = embedded.url
        pool = await open_pool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            pgbouncer=settings.pgbouncer,
        )
        services._stack.push_async_callback(pool.close)
        services.pool = pool
        lock_pool = await open_pool(
            url, min_size=1, max_size=settings.lock_pool_max_size, pgbouncer=settings.pgbouncer
        )
        services._stack.push_async_callback(lock_pool.close)
        services.lock_pool = lock_pool
        services.pgvector = await has_pgvector(pool)
        if with_embeddings:
            if embeddings is None:
                from stores.embeddings import build_embeddings

                embeddings = build_embeddings(settings)
            services.embeddings = embeddings
        if not services.pgvector:
            log.warning(
                "PostgreSQL has no pgvector: semantic search falls back to full-text search"
            )
        # Schema setup (CREATE … IF NOT EXISTS) is not safe to race: server workers starting
        # together failed on duplicate types. One session lock makes them take turns.
        async with lock_pool.connection() as setup_conn:
            await setup_conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
            try:
                create = migrate or await current_version(pool) != SCHEMA_VERSION
                await _setup_stores(
                    services, settings, pool, with_memory=with_memory, create=create
                )
                if with_graph:
                    from stores.graph_services import attach_graph

                    await attach_graph(services, services._stack)
                if create:
                    await record_version(pool)
            finally:
                await setup_conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        yield services


async def _setup_stores(
    services: Services,
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    *,
    with_memory: bool,
    create: bool,
) -> None:
    """Build the checkpointer, store, registries and memory index; with ``create``, make
    every table first, the memory and outbox tables included even when this process uses
    neither (the version recorded afterwards promises the whole schema)."""
    from stores.memory_store import MemoryConfig, MemoryStore
    from stores.outbox import GraphOutbox

    key = settings.checkpoint_key.get_secret_value() if settings.checkpoint_key else None
    services.checkpointer = await make_checkpointer(pool, encryption_key=key, create=create)
    services.store = await make_store(
        pool,
        embeddings=services.embeddings if services.pgvector else None,
        dims=settings.embedding_dims,
        create=create,
    )
    services.threads = ThreadRegistry(pool)
    services.users = UserRegistry(pool)
    memory = MemoryStore(
        pool,
        services.embeddings,
        config=MemoryConfig.from_settings(settings),
        dims=settings.embedding_dims,
    )
    if create:
        await services.threads.setup()
        await services.users.setup()
        await GraphOutbox(pool).setup()
    if with_memory or create:
        await memory.setup(create=create)
    if with_memory:  # long-term memory: hybrid recall beside the store's own table
        services.memory = memory


_default: Services | None = None
_default_lock = asyncio.Lock()


async def default_services() -> Services:
    """Process-wide services for hosts that pass none (``langgraph dev``).

    Only the chat model and settings are needed there: the platform supplies its own
    checkpointer and store through the runtime.
    """
    global _default
    async with _default_lock:
        if _default is None:
            _default = Services(settings=get_settings())
        return _default


async def services_for(runtime: Runtime[Any]) -> Services:
    """The services a node should use for this run."""
    ctx = runtime.context
    services = getattr(ctx, "services", None)
    if isinstance(services, Services):
        return services
    return await default_services()


def store_for(runtime: Runtime[Any], services: Services) -> BaseStore | None:
    """The LangGraph store of this run: the runtime's if the host compiled one in."""
    return runtime.store if runtime.store is not None else services.store


__all__ = ["MnemographError", "Services", "default_services", "open_services", "services_for"]
