"""Two processes (or requests) starting the same new thread at the same moment both get it.

``mnemo_threads`` has two unique indexes: the storage key (primary key) and (user, id). An
``INSERT … ON CONFLICT (user_id, name)`` racing another insert of the same new thread could
hit the *key* index first, which that clause does not cover, and the loser answered "thread
not found": the first turn of a thread sent to two instances at once failed with 404 in
``tests/e2e/test_two_instances.py``.
"""

from __future__ import annotations

import asyncio
import uuid

from mnemograph.services import Services


async def test_concurrent_claims_of_a_new_thread_all_get_it(services: Services) -> None:
    registry = services.thread_registry()
    user = f"u-{uuid.uuid4().hex[:8]}"
    for _ in range(30):
        tid = f"race-{uuid.uuid4().hex[:8]}"
        got = await asyncio.gather(*(registry.claim(user, tid) for _ in range(8)))
        assert {info.key for info in got} == {f"{user}/{tid}"}
        assert (await registry.get(tid, user)).key == f"{user}/{tid}"
