"""Who owns which thread. Checkpoints carry no owner, so this table is the ownership check
that every CLI command and HTTP route goes through before touching a thread.

Thread ids are per user: a thread is found by (owner, id), and everything stored for it is
keyed by its storage key (:attr:`ThreadInfo.key`), which every door takes from here."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from stores.errors import NotFound
from stores.ids import check_id, thread_key
from stores.postgres.migrations import (
    GONE_SQLSTATE,
    GONE_THREAD_LOCK,
    THREAD_NAMES_DDL,
    THREADS_DDL,
    create_tables,
)

_COLUMNS = "name AS thread_id, user_id, title, created_at, updated_at, thread_id AS key"
"""A row as :class:`ThreadInfo`: the owner's id for the thread, and its storage key."""


@dataclass(frozen=True)
class ThreadInfo:
    """A thread as its owner sees it in listings, with the key its state is stored under."""

    thread_id: str
    user_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    key: str
    """The storage key: the ``thread_id`` of its checkpoints, locks and run marks."""


class ThreadRegistry:
    """Thread ownership in Postgres. Ids are per user: the same id chosen by two users is two
    threads, so an id tells nobody whether another user uses it."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def setup(self) -> None:
        """Create the registry's table alone (tests, tools); hosts run ``migrate``."""
        await create_tables(self._pool, (*THREADS_DDL, *THREAD_NAMES_DDL))

    async def claim(
        self, user_id: str, thread_id: str, title: str = "", *, key: str | None = None
    ) -> ThreadInfo:
        """Create ``user_id``'s thread ``thread_id`` or confirm it exists; return it.

        ``key`` stores a new thread under a key chosen elsewhere (LangGraph Studio's
        server-issued thread ids, whose checkpoints the platform writes under that id);
        by default it is :func:`~stores.ids.thread_key`. A key already taken by another
        thread (possible only with ``key``) is reported as not found.
        """
        check_id("user id", user_id)
        check_id("thread id", thread_id)
        stored = key if key is not None else thread_key(user_id, thread_id)
        row = None
        for attempt in (1, 2):
            try:
                row = await self._upsert(stored, user_id, thread_id, title)
                break
            except psycopg.errors.UniqueViolation:
                # The key index is not the ON CONFLICT arbiter: an insert of the same new
                # thread racing this one (another request or instance) violates it first.
                # That insert has committed by now, so a second try finds the row; a key
                # that names another user's thread fails again and is not found.
                if attempt == 2:
                    raise NotFound(f"thread {thread_id!r} not found") from None
            except psycopg.Error as exc:  # the user was deleted (or the key's thread was)
                if exc.sqlstate == GONE_SQLSTATE:
                    raise NotFound(f"thread {thread_id!r} not found") from None
                raise
        if row is None or (key is not None and row["key"] != key):
            raise NotFound(f"thread {thread_id!r} not found")
        return ThreadInfo(**row)

    async def _upsert(self, key: str, user_id: str, name: str, title: str) -> Any:
        """Insert the thread or touch the user's existing one of that id; the row."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"""
                INSERT INTO mnemo_threads (thread_id, user_id, name, title)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (user_id, name) DO UPDATE SET updated_at = now()
                RETURNING {_COLUMNS}
                """,
                (key, user_id, name, title[:200]),
            )
            return await cur.fetchone()

    async def get(self, thread_id: str, user_id: str) -> ThreadInfo:
        """``user_id``'s thread ``thread_id``; anyone else's id is simply not found."""
        check_id("thread id", thread_id)
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM mnemo_threads WHERE user_id = %s AND name = %s",
                (user_id, thread_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"thread {thread_id!r} not found")
        return ThreadInfo(**row)

    async def list(self, user_id: str, limit: int = 100, offset: int = 0) -> list[ThreadInfo]:
        """The user's threads, most recently active first (``offset``/``limit``: a page)."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM mnemo_threads "
                "WHERE user_id = %s ORDER BY updated_at DESC, name LIMIT %s OFFSET %s",
                (user_id, limit, offset),
            )
            rows = await cur.fetchall()
        return [ThreadInfo(**r) for r in rows]

    async def tombstone_user_threads(self, user_id: str) -> builtins.list[str]:
        """Record every thread of ``user_id`` as deleted and return their storage keys.

        From the commit on, no checkpoint can be written on them and nobody can claim their
        ids again (migration 2). Call it after the user's own tombstone, so the list is
        complete: the user can claim no new thread by then.
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT thread_id FROM mnemo_threads WHERE user_id = %s ORDER BY thread_id",
                (user_id,),
            )
            ids = [str(r["thread_id"]) for r in await cur.fetchall()]
            for thread_id in ids:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    (GONE_THREAD_LOCK, thread_id),
                )
            if ids:
                await conn.execute(
                    "INSERT INTO mnemo_deleted_threads (thread_id, user_id) "
                    "SELECT unnest(%s::text[]), %s ON CONFLICT DO NOTHING",
                    (ids, user_id),
                )
        return ids

    async def begin_run(self, thread_id: str, context: dict[str, Any]) -> dict[str, Any] | None:
        """Mark a run as started; return the context of an unfinished earlier run, if any.

        ``thread_id`` here, in :meth:`end_run` and from :meth:`unfinished` is a storage key.

        Called with the thread lock held, so an earlier mark can only be a run that died.
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """
                UPDATE mnemo_threads t
                   SET pending_since = now(), pending_context = %s, updated_at = now()
                  FROM (SELECT thread_id, pending_since, pending_context FROM mnemo_threads
                         WHERE thread_id = %s FOR UPDATE) prev
                 WHERE t.thread_id = prev.thread_id
             RETURNING prev.pending_since AS was_pending, prev.pending_context AS was_context
                """,
                (Jsonb(context), thread_id),
            )
            row = await cur.fetchone()
        if row is None or row["was_pending"] is None:
            return None
        return dict(row["was_context"] or {})

    async def end_run(self, thread_id: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE mnemo_threads SET pending_since = NULL, pending_context = NULL "
                "WHERE thread_id = %s",
                (thread_id,),
            )

    async def unfinished(self, limit: int = 1000) -> builtins.list[tuple[str, str]]:
        """(storage key, user_id) of runs that started and never finished, oldest first."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT thread_id, user_id FROM mnemo_threads WHERE pending_since IS NOT NULL "
                "ORDER BY pending_since LIMIT %s",
                (limit,),
            )
            return [(r["thread_id"], r["user_id"]) for r in await cur.fetchall()]

    async def delete(self, thread_id: str, user_id: str) -> None:
        """Forget the ownership row; the caller deletes the checkpoints first."""
        await self.get(thread_id, user_id)
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM mnemo_threads WHERE name = %s AND user_id = %s",
                (thread_id, user_id),
            )
