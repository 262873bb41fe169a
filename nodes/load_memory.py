"""Recall: gather what the stores know that bears on the new message, before the model runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.render import last_human_text
from graph.state import AgentState, Recalled
from stores.services import Services, services_for

log = logging.getLogger(__name__)


async def load_memory(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Fill ``recalled`` for this turn. A store that fails degrades recall, never the turn."""
    ctx = runtime.context or Context()
    text = last_human_text(state.get("messages", []))
    recalled: list[Recalled] = []
    if not text:
        return {"recalled": recalled}
    services = await services_for(runtime)
    recallers = _recallers(services)
    # Both recalls compare the message with vectors of the same embedder: embed it once.
    embedder = services.embeddings
    vector = (
        asyncio.ensure_future(embedder.aembed_query(" ".join(text.split())))
        if embedder is not None and recallers
        else None
    )
    # Memory and graph recall are independent round trips: run them side by side.
    try:
        results = await asyncio.gather(
            *(recall(services, ctx, text, vector) for recall in recallers),
            return_exceptions=True,
        )
    finally:
        if vector is not None and not vector.done():
            vector.cancel()
        elif vector is not None and not vector.cancelled():
            vector.exception()  # retrieved, so a failed embedding is not logged as unawaited
    for recall, result in zip(recallers, results, strict=True):
        if isinstance(result, BaseException):  # a broken store must not break chat
            log.error("recall failed in %s: %r", recall.__name__, result)
        else:
            recalled.extend(result)
    return {"recalled": recalled}


def _recallers(services: Services) -> list[Any]:
    """The recall sources that are configured for this process."""
    sources: list[Any] = []
    if services.memory is not None:
        sources.append(_recall_memories)
    if services.graph is not None:
        sources.append(_recall_facts)
    return sources


async def _recall_memories(
    services: Services, ctx: Context, text: str, vector: Awaitable[Any] | None
) -> list[Recalled]:
    from stores.memory_store import recall_memories

    items: list[Any] = await recall_memories(
        services.memory,
        ctx.user_id,
        text,
        k=ctx.recall_k,
        token_budget=ctx.recall_tokens,
        query_vector=vector,
    )
    return items


async def _recall_facts(
    services: Services, ctx: Context, text: str, vector: Awaitable[Any] | None
) -> list[Recalled]:
    from graph.kg_recall import recall_facts

    facts: list[Any] = await recall_facts(
        services.graph,
        services.embeddings,
        ctx.user_id,
        text,
        hops=ctx.kg_hops,
        token_budget=ctx.kg_tokens,
        query_vector=vector,
    )
    return facts
