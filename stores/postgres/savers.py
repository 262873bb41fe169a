"""One psycopg pool for the whole process, and the LangGraph checkpointer and store on it."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cachetools import LRUCache
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    DeltaChannelHistory,
    get_checkpoint_id,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from stores.errors import ServiceUnavailable

log = logging.getLogger(__name__)

_T = TypeVar("_T")


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
        check=_check_if_idle,
        reset=_mark_returned,
    )
    try:
        await pool.open(wait=True, timeout=10.0)
    except Exception as exc:
        await pool.close()
        raise ServiceUnavailable(
            "PostgreSQL", f"cannot connect to {redact_url(url)} ({type(exc).__name__})"
        ) from exc
    return pool


IDLE_CHECK_S = 2.0
"""A pooled connection unused for longer than this is tested before it is handed out."""
_returned_at: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = weakref.WeakKeyDictionary()


async def _mark_returned(conn: AsyncConnection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


async def _check_if_idle(conn: AsyncConnection[Any]) -> None:
    """Test a connection on checkout only if it sat idle, not on every checkout.

    A database restart leaves dead connections in the pool, and checking them (one round
    trip) makes the first request after it work instead of failing. Checking *every*
    checkout cost a round trip each time, and a turn checks out ~19 connections (10 ms of a
    46 ms reply path). A connection returned moments ago by a successful call is alive; one
    that failed is discarded by the pool anyway (its state is BAD).
    """
    returned = _returned_at.get(conn)
    if returned is None or time.monotonic() - returned > IDLE_CHECK_S:
        await AsyncConnectionPool.check_connection(conn)


async def has_pgvector(pool: AsyncConnectionPool[Any]) -> bool:
    """Whether semantic search can run on this server (the system PG15 here has no pgvector)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 AS ok FROM pg_available_extensions WHERE name = 'vector'"
        )
        return await cur.fetchone() is not None


@dataclass(frozen=True)
class _Inline:
    """A primitive channel value routed to the (encrypted) blob table instead of the JSONB."""

    value: Any


DELTA_CACHE_THREADS = 512
"""Threads whose newest message state a process keeps in memory (least recently used go)."""


def _thread_key(config: RunnableConfig) -> tuple[str, str]:
    configurable = config.get("configurable") or {}
    return str(configurable.get("thread_id")), str(configurable.get("checkpoint_ns") or "")


class PooledPostgresSaver(AsyncPostgresSaver):
    """The Postgres saver without its process-wide lock when it draws from a pool, and with
    each thread's newest message state kept in memory (:meth:`remember_channels`).

    ``AsyncPostgresSaver._cursor`` holds one ``asyncio.Lock`` around every read and write,
    which protects a single shared connection, but with a pool it serialized every
    checkpoint of every thread in the process: under 100 concurrent threads, turns queued on
    it. Each pooled call checks out its own connection, so no lock is needed (LangGraph's
    own ``AsyncPostgresStore`` already skips it for pools). A single connection keeps it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._newest: LRUCache[tuple[str, str], str] = LRUCache(DELTA_CACHE_THREADS)
        self._replayed: LRUCache[tuple[str, str], tuple[str, dict[str, Any]]] = LRUCache(
            DELTA_CACHE_THREADS
        )
        self._watches: dict[tuple[str, str], tuple[frozenset[str], asyncio.Future[None]]] = {}
        self._writing: dict[str, set[asyncio.Task[Any]]] = {}
        """Each thread's checkpoint writes in flight (see :meth:`settled`)."""

    def _shielded(self, thread_id: str, write: Coroutine[Any, Any, _T]) -> Awaitable[_T]:
        """Run ``write`` to the end even if its caller is cancelled.

        A run cancelled mid-write (a client that left) would otherwise cut the write off
        inside psycopg, and whether it landed would be unknown until the server finished it:
        a rollback reading the thread meanwhile could miss what then appears.
        """
        task = asyncio.ensure_future(write)
        tasks = self._writing.setdefault(thread_id, set())
        tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            tasks.discard(finished)
            if not tasks and self._writing.get(thread_id) is tasks:
                del self._writing[thread_id]
            if not finished.cancelled():
                finished.exception()  # retrieved: the caller, if still there, gets it too

        task.add_done_callback(done)
        return asyncio.shield(task)

    async def settled(self, thread_id: str) -> None:
        """Wait until no checkpoint write of the thread is in flight in this process."""
        while tasks := self._writing.get(thread_id):
            await asyncio.wait(set(tasks))

    def watch(self, thread_id: str, channels: frozenset[str], ns: str = "") -> asyncio.Future[None]:
        """A future that resolves once a checkpoint of the thread that updated any of
        ``channels`` is committed.

        With ``durability="async"`` LangGraph writes each checkpoint while the next step
        already runs, so a node starting no longer proves the previous step is saved. A turn
        watches for the checkpoint that schedules the post-reply nodes (its updated channels
        include ``branch:to:<node>``) and answers only when that one is durable.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watches[(thread_id, ns)] = (channels, future)
        return future

    def unwatch(self, thread_id: str, ns: str = "") -> None:
        entry = self._watches.pop((thread_id, ns), None)
        if entry is None:
            return
        if not entry[1].done():
            entry[1].cancel()
        elif not entry[1].cancelled():
            entry[1].exception()  # retrieved: a failed write is reported by the run itself

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        key = _thread_key(config)
        return await self._shielded(
            key[0], self._put(key, config, checkpoint, metadata, new_versions)
        )

    async def _put(
        self,
        key: tuple[str, str],
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        try:
            saved = await super().aput(config, checkpoint, metadata, new_versions)
        except Exception as exc:
            self._settle_watch(key, checkpoint, exc)
            raise
        self._newest[key] = str(saved["configurable"]["checkpoint_id"])
        self._settle_watch(key, checkpoint, None)
        return saved

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        write = super().aput_writes(config, writes, task_id, task_path)
        await self._shielded(_thread_key(config)[0], write)

    def _settle_watch(
        self, key: tuple[str, str], checkpoint: Checkpoint, error: Exception | None
    ) -> None:
        """Report the write of a watched checkpoint (see :meth:`watch`): done or failed."""
        watch = self._watches.get(key)
        if watch is None or watch[1].done():
            return
        if watch[0].intersection(checkpoint.get("updated_channels") or ()):
            if error is None:
                watch[1].set_result(None)
            else:
                watch[1].set_exception(error)

    def remember_channels(self, thread_id: str, values: dict[str, Any], ns: str = "") -> None:
        """Keep the value of delta channels at the thread's newest checkpoint in memory.

        A ``DeltaChannel`` is rebuilt on every turn by reading and deserializing each write
        since its last snapshot (about 6 ms a turn here). The caller that just finished a
        run on the thread knows the final value; the next turn's load asks for exactly that
        checkpoint, and checkpoints never change, so the value can be handed back as the
        replay seed. Any other checkpoint (another process wrote, a state update, time
        travel) misses and is read from Postgres as before.
        """
        key = (thread_id, ns)
        newest = self._newest.get(key)
        if newest is None:
            return
        self._replayed[key] = (newest, dict(values))

    def forget_channels(self, thread_id: str) -> None:
        for key in [k for k in self._replayed if k[0] == thread_id]:
            del self._replayed[key]

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        key = _thread_key(config)
        hit = self._replayed.get(key)
        target = get_checkpoint_id(config)
        if hit is not None and target and hit[0] == target and all(c in hit[1] for c in channels):
            # A fresh list: the channel's reducer must never share a list with the cache.
            return {c: {"seed": copy.copy(hit[1][c]), "writes": []} for c in channels}
        return await super().aget_delta_channel_history(config=config, channels=channels)

    async def adelete_thread(self, thread_id: str) -> None:
        self.forget_channels(thread_id)
        await super().adelete_thread(thread_id)

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        if not isinstance(self.conn, AsyncConnectionPool) or self.pipe is not None:
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        async with self.conn.connection() as conn:
            if pipeline and self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            elif pipeline:
                async with (
                    conn.transaction(),
                    conn.cursor(binary=True, row_factory=dict_row) as cur,
                ):
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur


class EncryptedPostgresSaver(PooledPostgresSaver):
    """The Postgres saver with every channel value encrypted.

    The stock saver keeps primitive channel values (``str``/``int``/``None``: the rolling
    ``summary`` among them) inline in the plaintext ``checkpoints.checkpoint`` JSONB, so an
    encrypting serde alone would leave the summary readable. Here those values are boxed on
    the way in, which sends them through ``checkpoint_blobs`` and the encrypting serde like
    any other value (unboxed just before serializing); they load back unchanged because blobs
    are merged over inline values.
    """

    def __init__(self, conn: Any, *, serde: SerializerProtocol) -> None:
        super().__init__(conn=conn, serde=serde)

    def _dump_blobs(
        self,
        thread_id: str,
        checkpoint_ns: str,
        values: dict[str, Any],
        versions: ChannelVersions,
    ) -> list[tuple[str, str, str, str, str, bytes | None]]:
        plain = {k: v.value if isinstance(v, _Inline) else v for k, v in values.items()}
        return super()._dump_blobs(thread_id, checkpoint_ns, plain, versions)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        values = checkpoint["channel_values"]
        boxed = {
            k: _Inline(v) if v is None or isinstance(v, (str, int, float, bool)) else v
            for k, v in values.items()
        }
        return await super().aput(
            config, {**checkpoint, "channel_values": boxed}, metadata, new_versions
        )


def checkpoint_serde(key: str) -> SerializerProtocol:
    """AES (EAX) over LangGraph's default serializer, keyed by SHA-256 of the secret."""
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    return EncryptedSerializer.from_pycryptodome_aes(key=hashlib.sha256(key.encode()).digest())


async def make_checkpointer(
    pool: AsyncConnectionPool[Any],
    *,
    serde: SerializerProtocol | None = None,
    encryption_key: str | None = None,
    create: bool = True,
) -> AsyncPostgresSaver:
    """Build the saver and create its tables; ``setup`` runs on an autocommit connection.

    With ``encryption_key`` every checkpoint value, blob and pending write is AES-encrypted
    (see ``EncryptedPostgresSaver``); metadata (step, source, thread and user ids) is not.
    """
    saver: AsyncPostgresSaver
    if encryption_key:
        saver = EncryptedPostgresSaver(pool, serde=serde or checkpoint_serde(encryption_key))
    else:
        saver = PooledPostgresSaver(conn=pool, serde=serde)
    if create:  # skipped when the schema is current (stores.postgres.migrations)
        await saver.setup()
    return saver


async def make_store(
    pool: AsyncConnectionPool[Any],
    *,
    embeddings: Embeddings | None = None,
    dims: int | None = None,
    create: bool = True,
) -> AsyncPostgresStore:
    """Build LangGraph's plain key-value store on the pool, with no vector index.

    Long-term memories are searched by ``stores.memory.store.MemoryStore`` (full text and
    vectors of its own), and graphs get ``stores.memory.langgraph_store.HybridMemoryStore``,
    which routes the memories namespace there and every other namespace to this store. A
    LangGraph ``index=`` here embedded every ``put`` for a ``store_vectors`` table nothing
    searched, so none is configured: ``setup()`` then runs only the ``store`` table's own
    migrations and neither creates nor touches ``store_vectors`` (a database made by an
    earlier release keeps that table, unused and harmless; deleting a store row still
    cascades to it). ``embeddings`` and ``dims`` are accepted for existing callers and
    ignored.
    """
    del embeddings, dims  # no LangGraph vector index (see above)
    store = AsyncPostgresStore(conn=pool)
    if create:  # skipped when the schema is current (stores.postgres.migrations)
        await store.setup()
    return store
