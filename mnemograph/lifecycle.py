"""A user's whole footprint across every store: export it as one document, or delete it.

GDPR requests must cover checkpoints, store items, long-term memories, graph nodes and the
outbox alike; keeping both operations in one module means a new store cannot be added without
someone seeing that export and delete need to learn about it too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mnemograph.services import Services
from mnemograph.threads_view import read_thread
from stores.ids import check_id


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
    services: Services, user_id: str, *, keep_account: bool = False
) -> dict[str, int]:
    """Remove every trace of ``user_id`` and report what was removed, per store.

    Threads go through the checkpointer's own ``adelete_thread`` so checkpoints, blobs and
    writes all disappear; store items are removed by namespace prefix (every namespace starts
    with the user id).
    """
    check_id("user id", user_id)
    counts: dict[str, int] = {}
    if services.memory is not None:  # before the generic store sweep, so counts are its own
        counts["memories"] = await services.memory.delete_user(user_id)
    owned = await services.thread_registry().list(user_id, limit=1_000_000)
    if services.checkpointer is not None:
        for info in owned:
            await services.checkpointer.adelete_thread(info.thread_id)
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
