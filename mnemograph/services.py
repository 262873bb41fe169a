"""The process's connections, opened once and handed to the graph through its context.

Hosts (CLI, server, tests, benches) open one ``Services`` with :func:`open_services` and pass
it in ``Context.services``; it implements ``graph.ports.TurnPorts``, the only way nodes reach
storage and models. ``langgraph dev`` runs the graph of ``mnemograph.studio``, which builds
its services lazily on first use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from graph.builder import build_graph
from graph.structured import structured
from stores.errors import ConfigurationError, MnemographError
from stores.memory.langgraph_store import HybridMemoryStore
from stores.postgres.embedded import start_embedded_postgres
from stores.postgres.migrations import SCHEMA_VERSION, current_version
from stores.postgres.migrations import migrate as migrate_schema
from stores.postgres.savers import has_pgvector, make_checkpointer, make_store, open_pool
from stores.postgres.threads import ThreadRegistry
from stores.postgres.users import UserRegistry
from stores.settings import Settings, get_settings

if TYPE_CHECKING:
    from stores.knowledge.bolt import GraphStore
    from stores.knowledge.facts import KnowledgeGraph
    from stores.knowledge.outbox import GraphOutbox
    from stores.memory.store import MemoryStore

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

T = TypeVar("T")

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
    facts: KnowledgeGraph | None = None
    """The knowledge graph (Bolt store, outbox, recall caches); ``None`` when not opened."""
    memory: MemoryStore | None = None
    """Long-term memory (hybrid search); ``None`` when a host opened services without it."""
    redact: Callable[[str], str] | None = None
    """PII redactor applied before long-term and graph writes (None when turned off)."""
    _chat_model: BaseChatModel | None = None
    _structured: dict[type[BaseModel], Runnable[Any, Any]] = field(default_factory=dict)
    _graph: CompiledStateGraph[Any, Any, Any, Any] | None = None
    _hybrid: HybridMemoryStore | None = None
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def graph(self) -> GraphStore | None:
        """The Bolt knowledge-graph store; ``None`` when no graph server could be opened."""
        return self.facts.graph if self.facts is not None else None

    @property
    def outbox(self) -> GraphOutbox | None:
        """Where triples wait while the graph server is down (a Postgres table)."""
        return self.facts.outbox if self.facts is not None else None

    def thread_registry(self) -> ThreadRegistry:
        """The thread registry; a clear error where a host did not open Postgres."""
        return _opened(self.threads, "the thread registry")

    def user_registry(self) -> UserRegistry:
        """The user registry; a clear error where a host did not open Postgres."""
        return _opened(self.users, "the user registry")

    def postgres(self) -> Pool:
        """The connection pool; a clear error where a host did not open Postgres."""
        return _opened(self.pool, "PostgreSQL")

    def chat_model(self) -> BaseChatModel:
        """The chat model, built on first use so commands that need no LLM never start one."""
        if self._chat_model is None:
            from stores.models.llm import build_chat_model

            self._chat_model = build_chat_model(self.settings, stack=self._stack)
        return self._chat_model

    def set_chat_model(self, model: BaseChatModel) -> None:
        """Inject a model (tests, benches, hosts that own their model)."""
        self._chat_model = model
        self._structured.clear()

    def state_graph(self) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The turn graph over this process's checkpointer and store, compiled once.

        Turns and state reads (API, CLI, export) share it: compiling costs milliseconds and
        allocates the whole graph. It is rebuilt only if the checkpointer or store changed.
        """
        store = self.langgraph_store()
        graph = self._graph
        if graph is None or graph.checkpointer is not self.checkpointer or graph.store is not store:
            graph = self._graph = build_graph(
                self.checkpointer, store, delta_messages=self.settings.delta_messages
            )
        return graph

    def langgraph_store(self) -> BaseStore | None:
        """The ``BaseStore`` graphs are compiled with: the user's ``(user_id, "memories")``
        namespace served by the hybrid memory, every other namespace by the Postgres store,
        so ``get_store().asearch((user, "memories"), query=...)`` ranks like recall does."""
        if self.store is None:
            return None
        if self.memory is None:
            return self.store
        hybrid = self._hybrid
        if hybrid is None or hybrid.postgres is not self.store or hybrid.memory is not self.memory:
            hybrid = self._hybrid = HybridMemoryStore(self.store, self.memory)
        return hybrid

    def structured(self, schema: type[BaseModel]) -> Runnable[Any, Any]:
        """The chat model bound to answer as ``schema``, built once per schema: building it
        converts the schema to a tool definition, milliseconds the extracting nodes would
        otherwise pay on every turn."""
        runnable = self._structured.get(schema)
        if runnable is None:
            runnable = self._structured[schema] = structured(self.chat_model(), schema)
        return runnable


def _opened(part: T | None, what: str) -> T:
    if part is None:
        raise ConfigurationError(f"{what} is not open in this process: use open_services()")
    return part


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
    """Open Postgres (embedded unless ``DATABASE_URL``), bring the schema up to date, yield.

    DDL runs only when the database's recorded schema version is behind this code's
    (``stores.postgres.migrations``), or with ``migrate``: then LangGraph's saver and store
    run their own setup and Mnemograph's pending migrations are applied, under the setup
    lock. A start on a current schema runs no DDL, and none of it is on the per-turn path.
    """
    settings = settings or get_settings()
    _single_threaded_blas()
    services = Services(settings=settings)
    if settings.pii_redaction:
        from stores.pii import make_redactor

        services.redact = make_redactor(settings.pii_regions)
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
            # Let go of it when the services close (the last holder stops it): a process
            # ended by a re-raised signal never runs pgserver's atexit hook.
            services._stack.push_async_callback(asyncio.to_thread, embedded.release)
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
                from stores.models.embeddings import build_embeddings

                embeddings = build_embeddings(settings)
            services.embeddings = embeddings
        if not services.pgvector:
            log.warning(
                "PostgreSQL has no pgvector: semantic search falls back to full-text search"
            )
        # Schema setup (CREATE … IF NOT EXISTS) is not safe to race: server workers starting
        # together failed on duplicate types. One session lock makes them take turns.
        async with lock_pool.connection() as setup_conn:
            await _take_setup_lock(setup_conn)
            try:
                create = migrate or await current_version(pool) != SCHEMA_VERSION
                await _setup_stores(
                    services, settings, pool, with_memory=with_memory, create=create
                )
                if with_graph:
                    from stores.knowledge.opening import open_knowledge

                    services.facts = await open_knowledge(
                        settings, pool, services.embeddings, services._stack
                    )
            finally:
                await setup_conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        yield services


async def _take_setup_lock(conn: Any, poll_s: float = 0.1) -> None:
    """Take the schema-setup lock by polling ``pg_try_advisory_lock``.

    A plain ``pg_advisory_lock`` waits inside its statement's transaction, and the holder's
    ``CREATE INDEX CONCURRENTLY`` waits for every open transaction to end: two workers
    starting on a fresh database waited on each other for ever. Each poll ends at once.
    """
    while True:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (SETUP_LOCK,))
        row = await cur.fetchone()
        if row is not None and (row["ok"] if isinstance(row, dict) else row[0]):
            return
        await asyncio.sleep(poll_s)


async def _setup_stores(
    services: Services,
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    *,
    with_memory: bool,
    create: bool,
) -> None:
    """Build the checkpointer, store, registries and memory index; with ``create``, first
    run LangGraph's own setup and then Mnemograph's pending migrations (which need
    LangGraph's ``store`` table and record their versions themselves)."""
    from stores.memory.model import MemoryConfig
    from stores.memory.store import MemoryStore

    key = settings.checkpoint_key.get_secret_value() if settings.checkpoint_key else None
    services.checkpointer = await make_checkpointer(pool, encryption_key=key, create=create)
    services.store = await make_store(
        pool,
        embeddings=services.embeddings if services.pgvector else None,
        dims=settings.embedding_dims,
        create=create,
    )
    if create:
        applied = await migrate_schema(
            pool, dims=settings.embedding_dims, pgvector=services.pgvector
        )
        if applied:
            log.info("schema migrations applied: %s", applied)
    services.threads = ThreadRegistry(pool)
    services.users = UserRegistry(pool)
    if with_memory:  # long-term memory: hybrid recall beside the store's own table
        memory = MemoryStore(
            pool,
            services.embeddings,
            config=MemoryConfig.from_settings(settings),
            dims=settings.embedding_dims,
        )
        await memory.setup()
        services.memory = memory


__all__ = ["MnemographError", "Services", "open_services"]
