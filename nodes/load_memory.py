"""Recall: gather what the stores know that bears on the new message, before the model runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.ports import (
    FactPort,
    MemoryPort,
    QueryVector,
    Recalled,
    TurnPorts,
    ports_of,
)
from graph.render import last_human_text
from graph.state import AgentState

log = logging.getLogger(__name__)


async def load_memory(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Fill ``recalling`` for this turn. A store that fails degrades recall, never the turn.

    Only the prompt reads it on the reply path; ``record_recall`` keeps it in the thread
    state after the reply, so the reply's checkpoint stays as small as before.
    """
    ctx = runtime.context or Context()
    text = last_human_text(state.get("messages", []))
    recalled: list[Recalled] = []
    if not text:
        return {"recalling": recalled}
    ports = ports_of(ctx.services)
    recalls = _recalls(ports, ctx, text)
    if not recalls:
        return {"recalling": recalled}
    # Both recalls compare the message with vectors of the same embedder: embed it once.
    embedder = ports.embeddings
    vector = (
        asyncio.ensure_future(embedder.aembed_query(" ".join(text.split())))
        if embedder is not None
        else None
    )
    # Memory and graph recall are independent round trips: run them side by side.
    try:
        results = await asyncio.gather(
            *(recall(vector) for _, recall in recalls), return_exceptions=True
        )
    finally:
        if vector is not None and not vector.done():
            vector.cancel()
        elif vector is not None and not vector.cancelled():
            vector.exception()  # retrieved, so a failed embedding is not logged as unawaited
    for (name, _), result in zip(recalls, results, strict=True):
        if isinstance(result, BaseException):  # a broken store must not break chat
            log.error("recall failed in %s: %r", name, result)
        else:
            recalled.extend(_tracked(r) for r in result)
    return {"recalling": recalled}


def _tracked(item: Recalled) -> Recalled:
    """The record as the thread state keeps it: the prompt text as recalled (the store already
    fitted it to the token budget), the score rounded, nothing else a store may have added."""
    return Recalled(
        kind=item["kind"],
        text=item["text"],
        score=round(float(item["score"]), 4),
        source=item["source"],
    )


Recall = Callable[[QueryVector | None], Awaitable[list[Recalled]]]


def _recalls(ports: TurnPorts, ctx: Context, text: str) -> list[tuple[str, Recall]]:
    """The recall sources configured for this process, bound to this turn's request."""
    sources: list[tuple[str, Recall]] = []
    memory: MemoryPort | None = ports.memory
    if memory is not None:
        sources.append(
            (
                "memory",
                lambda vector: memory.recall(
                    ctx.user_id, text, k=ctx.recall_k, token_budget=ctx.recall_tokens,
                    query_vector=vector,
                ),
            )
        )
    facts: FactPort | None = ports.facts
    if facts is not None:
        sources.append(
            (
                "facts",
                lambda vector: facts.recall(
                    ctx.user_id, text, hops=ctx.kg_hops, token_budget=ctx.kg_tokens,
                    query_vector=vector,
                ),
            )
        )
    return sources
