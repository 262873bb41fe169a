"""Reading a thread's stored state the way the product does, for assertions.

Thread ids are per user, so a thread's state is found by (user, thread id): its storage key
(``stores.ids.thread_key``), not the id alone.
"""

from __future__ import annotations

from typing import Any

from mnemograph.services import Services
from stores.ids import thread_key


async def thread_values(services: Services, user_id: str, thread_id: str) -> dict[str, Any]:
    """The current state values of ``user_id``'s thread ``thread_id`` (``{}`` if none)."""
    config: Any = {"configurable": {"thread_id": thread_key(user_id, thread_id)}}
    return dict((await services.state_graph().aget_state(config)).values or {})


async def stored_messages(
    services: Services, user_id: str, thread_id: str
) -> list[tuple[str, str]]:
    """``(type, text)`` of each message the thread keeps."""
    values = await thread_values(services, user_id, thread_id)
    return [(m.type, m.text) for m in values.get("messages", [])]
