"""The per-thread session lock is never left behind on a pooled connection.

``pg_advisory_lock`` can be granted just as the task waiting for it is cancelled (a client
that leaves at that moment): the grant arrives, the task has gone. Before the fix the
connection went back to the pool still holding the thread, and every later turn on that
thread waited for ever (seen as a rare hang in ``test_a_cut_at_any_moment_…``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import psycopg
import pytest

from stores.postgres.thread_locks import KEY_SEED, holding_thread


class _CutAfterGrant:
    """A connection whose lock request is granted, and whose caller is cancelled just then."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def execute(self, query: str, params: Any = None) -> Any:
        cur = await self.conn.execute(query, params)
        if "pg_advisory_lock(" in query:
            raise asyncio.CancelledError
        return cur

    async def close(self) -> None:
        await self.conn.close()


async def _free(pg_url: str, thread_id: str) -> bool:
    """Whether another session can take the thread's lock now (released again at once)."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as other:
        cur = await other.execute(
            f"SELECT pg_try_advisory_lock(hashtextextended(%s, {KEY_SEED}))", (thread_id,)
        )
        row = await cur.fetchone()
        assert row is not None
        if row[0]:
            await other.execute(
                f"SELECT pg_advisory_unlock(hashtextextended(%s, {KEY_SEED}))", (thread_id,)
            )
        return bool(row[0])


async def test_a_lock_granted_as_its_wait_is_cancelled_is_not_kept(pg_url: str) -> None:
    thread_id = f"lock-{uuid.uuid4().hex[:8]}"
    conn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    try:
        with pytest.raises(asyncio.CancelledError):
            async with holding_thread(cast(Any, _CutAfterGrant(conn)), thread_id):
                raise AssertionError("the block must not run")
        assert await _free(pg_url, thread_id)
        assert conn.closed  # the session that may hold the lock was ended
    finally:
        await conn.close()


async def test_the_lock_is_held_for_the_block_and_released_after(pg_url: str) -> None:
    thread_id = f"lock-{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        async with holding_thread(conn, thread_id):
            assert not await _free(pg_url, thread_id)
        assert await _free(pg_url, thread_id)
        assert not conn.closed  # a clean release keeps the connection for the pool
