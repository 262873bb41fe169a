"""A user's whole footprint across every store: export it as one document, or delete it.

GDPR requests must cover checkpoints, store items, long-term memories, graph nodes and the
outbox alike; keeping both operations in one module means a new store cannot be added without
someone seeing that export and delete need to learn about it too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mnemograph.services import Services
from mnemograph.threads_view import read_thread
from stores.ids import check_id
from stores.postgres.thread_locks import try_thread_xact_lock

if TYPE_CHECKING:
    from mnemograph.runner import TurnRunner

log = logging.getLogger(__name__)


async def export_user(services: Services, user_id: str) -> dict[str, Any]:
    """Everything stored for ``user_id`` as one JSON-ready document."""
    check_id("user id", user_id)
    threads = [
        await read_thread(services, info, omit=("user_id", "turns"))
        for info in await services.thread_registry().list(user_id, limit=100_000)
    ]
    doc: dict[str, Any] = {
        "user_id": user_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "threads": threads,
        "memories": [],
        "graph": {"entities": [], "relations": []},
        "graph_outbox": [],
    }
    if services.memory is not None:
        doc["memories"] = await services.memory.export_user(user_id)
    if services.facts is not None:
        doc.update(await services.facts.export_user(user_id))
    return doc


async def delete_user(
    services: Services,
    user_id: str,
    *,
    keep_account: bool = False,
    runner: TurnRunner | None = None,
    wait_s: float = 30.0,
) -> dict[str, int]:
    """Remove every trace of ``user_id`` and report what was removed, per store.

    Deletion is final, from every door and across processes:

    1. the user id is tombstoned first (``mnemo_deleted_users``): from its commit on, the
       database refuses every write for the user (store items, memories, outbox rows,
       thread claims), in any process, and no new turn of theirs can start;
    2. ``runner`` (this process's turn runner, if any) cancels the user's running turns,
       and only theirs, and waits until each has ended;
    3. their threads are tombstoned (``mnemo_deleted_threads``): no checkpoint can be
       written on them any more and nobody can claim their ids again; turns of the user
       still running in other processes are waited for (each thread's lock, ``wait_s`` at
       most: their writes are refused anyway, and graph writes check after writing);
    4. then everything stored is deleted.

    Threads go through the checkpointer's own ``adelete_thread`` so checkpoints, blobs and
    writes all disappear; store items are removed by namespace prefix (every namespace starts
    with the user id). ``keep_account`` wipes the data but lifts the user's tombstone at the
    end (their threads' ids stay retired).
    """
    check_id("user id", user_id)
    users = services.user_registry()
    await users.tombstone(user_id)
    try:
        async with runner.stopping(user_id) if runner is not None else nullcontext():
            owned = await services.thread_registry().tombstone_user_threads(user_id)
            await _wait_for_turns(services, owned, wait_s)
            return await _delete_data(services, user_id, owned, keep_account=keep_account)
    finally:
        if keep_account:
            await users.revive(user_id)


async def _wait_for_turns(services: Services, thread_ids: list[str], wait_s: float) -> None:
    """Wait (up to ``wait_s``) for turns on these threads in any process to end: each holds
    its thread's advisory lock for the whole turn, memory work included.

    The lock is only tried, never waited on in PostgreSQL: a blocked lock request cut by
    the deadline could still be granted and stay held by a pooled connection.
    """
    pool = services.lock_pool
    if pool is None or not thread_ids:
        return
    deadline = time.monotonic() + wait_s
    async with pool.connection(timeout=wait_s) as conn:
        for thread_id in thread_ids:
            while not await try_thread_xact_lock(conn, thread_id):  # autocommit: a probe
                if time.monotonic() > deadline:
                    log.warning("a turn of a deleted user still runs elsewhere; deleting anyway")
                    return
                await asyncio.sleep(0.05)


async def _delete_data(
    services: Services, user_id: str, owned: list[str], *, keep_account: bool
) -> dict[str, int]:
    counts: dict[str, int] = {}
    if services.memory is not None:  # before the generic store sweep, so counts are its own
        counts["memories"] = await services.memory.delete_user(user_id)
    if services.checkpointer is not None:
        for thread_id in owned:
            await services.checkpointer.adelete_thread(thread_id)
    async with services.postgres().connection() as conn:
        cur = await conn.execute("DELETE FROM mnemo_threads WHERE user_id = %s", (user_id,))
        counts["threads"] = cur.rowcount
        cur = await conn.execute(
            "DELETE FROM store WHERE prefix = %s OR prefix LIKE %s",
            (user_id, user_id.replace("_", r"\_") + ".%"),
        )
        counts["store_items"] = cur.rowcount
    if services.facts is not None:  # graph, queued writes and this process's caches
        counts.update(await services.facts.delete_user(user_id))
    if not keep_account and services.users is not None:
        counts["account_rows"] = await services.users.delete(user_id)
    return counts
