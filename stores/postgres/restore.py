"""What restoring a backup needs from PostgreSQL beyond the registries' everyday methods:
seeing the deletion tombstones (migration 2), lifting them on an administrator's explicit
request, and putting a restored thread's title and timestamps back.

Deletion is final for every ordinary path: nothing here is called by a turn, a route or a
CLI command other than ``mnemograph users import``, and :meth:`RestoreStore.lift_tombstones`
only by its ``--undelete`` (see :func:`mnemograph.lifecycle.import_user`).
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from stores.ids import check_id
from stores.postgres.migrations import GONE_THREAD_LOCK, GONE_USER_LOCK


class RestoreStore:
    """Tombstones and thread rows as a restore sees them; every query is scoped by user id."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def user_gone(self, user_id: str) -> bool:
        """Whether ``user_id`` is tombstoned (deleted, or being deleted)."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM mnemo_deleted_users WHERE user_id = %s) AS gone",
                (user_id,),
            )
            row = await cur.fetchone()
        return bool(row and row["gone"])

    async def has_data(self, user_id: str) -> bool:
        """Whether anything of ``user_id`` is still stored (threads, store items, memory
        index rows): for a tombstoned user, a deletion that has not finished."""
        check_id("user id", user_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM mnemo_threads WHERE user_id = %s) "
                "OR EXISTS (SELECT 1 FROM mnemo_memory_index WHERE user_id = %s) "
                "OR EXISTS (SELECT 1 FROM store WHERE prefix = %s OR prefix LIKE %s) AS used",
                (user_id, user_id, user_id, user_id.replace("_", r"\_") + ".%"),
            )
            row = await cur.fetchone()
        return bool(row and row["used"])

    async def retired_threads(self, user_id: str, keys: builtins.list[str]) -> builtins.list[str]:
        """Which of the storage ``keys`` are tombstoned threads of ``user_id``: ids retired
        by a deletion, which no claim or checkpoint may use again unless lifted."""
        check_id("user id", user_id)
        if not keys:
            return []
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT thread_id FROM mnemo_deleted_threads "
                "WHERE user_id = %s AND thread_id = ANY(%s) ORDER BY thread_id",
                (user_id, keys),
            )
            return [str(r["thread_id"]) for r in await cur.fetchall()]

    async def lift_tombstones(self, user_id: str, keys: builtins.list[str]) -> int:
        """Take back the tombstone of ``user_id`` and those of its threads stored under
        ``keys`` (and no others); return how many were lifted.

        Each is removed under the exclusive transaction lock the deleter takes to record it,
        so a writer's tombstone check (which takes the same lock shared) sees it either
        present or gone, never half way. Only ``mnemograph users import --undelete`` calls
        this: it is the one way back from a deletion, and an administrator's decision.
        """
        check_id("user id", user_id)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (GONE_USER_LOCK, user_id)
            )
            cur = await conn.execute(
                "DELETE FROM mnemo_deleted_users WHERE user_id = %s", (user_id,)
            )
            lifted = cur.rowcount or 0
            for key in sorted(set(keys)):
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (GONE_THREAD_LOCK, key)
                )
            if keys:
                cur = await conn.execute(
                    "DELETE FROM mnemo_deleted_threads WHERE user_id = %s AND thread_id = ANY(%s)",
                    (user_id, sorted(set(keys))),
                )
                lifted += cur.rowcount or 0
        return lifted

    async def set_thread_row(
        self,
        user_id: str,
        thread_id: str,
        *,
        title: str,
        created_at: datetime,
        updated_at: datetime,
    ) -> None:
        """Give ``user_id``'s (already claimed) thread ``thread_id`` the title and times it
        had when it was exported, so listings order and show it as before."""
        check_id("user id", user_id)
        check_id("thread id", thread_id)
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE mnemo_threads SET title = %s, created_at = %s, updated_at = %s "
                "WHERE user_id = %s AND name = %s",
                (title[:200], created_at, updated_at, user_id, thread_id),
            )
