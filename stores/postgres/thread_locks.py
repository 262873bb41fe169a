"""The per-thread advisory lock, in one place: turns hold it, pruning tries it.

Pruning a thread is safe only because it takes the very lock a turn holds; both sides build
the key here, so they can never drift apart. The key is PostgreSQL's 64-bit hash of the
thread id, so any thread id maps to a lock without a table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection

KEY_SEED = 7
"""Seed of ``hashtextextended``; changing it would let old and new processes run together
on one thread, so it never changes."""

_KEY = f"hashtextextended(%s, {KEY_SEED})"


@asynccontextmanager
async def holding_thread(conn: AsyncConnection[Any], thread_id: str) -> AsyncIterator[None]:
    """Hold the thread's session lock on ``conn`` (waiting for it) for the block's duration.

    If the process dies, PostgreSQL releases the lock with the connection. A session lock
    outlives the block if its ``pg_advisory_lock`` is granted just as the waiting task is
    cancelled (the result arrives, the task has gone), or if the unlock itself is cut: the
    pooled connection would then hold the thread for ever and every later turn on it would
    wait. Either way the session is closed instead, which releases its locks (the pool
    replaces a closed connection).
    """
    try:
        await conn.execute(f"SELECT pg_advisory_lock({_KEY})", (thread_id,))
    except BaseException:
        await _drop(conn)  # the lock may have been granted as the wait was cut
        raise
    try:
        yield
    finally:
        await asyncio.shield(_unlock(conn, thread_id))


async def _unlock(conn: AsyncConnection[Any], thread_id: str) -> None:
    try:
        await conn.execute(f"SELECT pg_advisory_unlock({_KEY})", (thread_id,))
    except BaseException:
        await _drop(conn)
        raise


async def _drop(conn: AsyncConnection[Any]) -> None:
    """End the session, and with it every session lock it holds."""
    await asyncio.shield(conn.close())


async def try_thread_xact_lock(conn: AsyncConnection[Any], thread_id: str) -> bool:
    """Take the thread's lock for the current transaction if free; ``False`` if a turn has
    it (the caller skips the thread rather than wait)."""
    cur = await conn.execute(f"SELECT pg_try_advisory_xact_lock({_KEY}) AS ok", (thread_id,))
    row = await cur.fetchone()
    if row is None:
        return False
    return bool(row["ok"] if isinstance(row, dict) else row[0])
