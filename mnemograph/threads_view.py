"""A thread as JSON: the one conversion of checkpointed state the API, the CLI and the GDPR
export all show, read through one compiled graph per :class:`Services`.

Reading state needs the compiled graph (it knows the channels, the ``DeltaChannel`` among
them), not just the checkpointer. Compiling it costs milliseconds and allocates the whole
graph, so ``Services.state_graph`` builds it once per ``Services`` and every reader, the
server's turn runner included, shares it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from mnemograph.services import Services
from stores.postgres.threads import ThreadInfo

Graph = CompiledStateGraph[Any, Any, Any, Any]


def state_graph(services: Services) -> Graph:
    """The compiled graph over ``services``' checkpointer and store (``Services.state_graph``:
    built once per ``Services`` and shared with its turn runner)."""
    return services.state_graph()


async def thread_values(services: Services, key: str) -> dict[str, Any]:
    """The current state values of the thread stored under ``key`` (``ThreadInfo.key``;
    ``{}`` for a thread with no checkpoint yet)."""
    snapshot = await state_graph(services).aget_state({"configurable": {"thread_id": key}})
    return dict(snapshot.values or {})


def thread_json(
    info: ThreadInfo, values: dict[str, Any], *, omit: Collection[str] = ()
) -> dict[str, Any]:
    """A thread and its state as one JSON-ready document, without the keys in ``omit``.

    Keys, in order: ``thread_id``, ``user_id``, ``title``, ``created_at``, ``updated_at``
    (ISO 8601), ``summary``, ``turns``, ``messages`` (each ``{"id", "type", "content"}``).
    """
    doc: dict[str, Any] = {
        "thread_id": info.thread_id,
        "user_id": info.user_id,
        "title": info.title,
        "created_at": info.created_at.isoformat(),
        "updated_at": info.updated_at.isoformat(),
        "summary": values.get("summary", ""),
        "turns": values.get("turn", 0),
        "messages": [
            {"id": m.id, "type": m.type, "content": m.text} for m in values.get("messages", [])
        ],
    }
    for key in omit:
        doc.pop(key, None)
    return doc


async def read_thread(
    services: Services, info: ThreadInfo, *, omit: Collection[str] = ()
) -> dict[str, Any]:
    """:func:`thread_json` of the thread's current state."""
    return thread_json(info, await thread_values(services, info.key), omit=omit)


__all__ = ["read_thread", "state_graph", "thread_json", "thread_values"]
