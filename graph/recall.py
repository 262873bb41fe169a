"""Recall for one message: every configured source, side by side, from one query embedding.

The ``load_memory`` node runs it, and so may the turn runner, *ahead* of the graph: recall
needs only the user, the request's knobs and the new message, none of the thread's state, so
the runner starts it as soon as it holds the thread, and the embedding, the SQL and the Bolt
round trips overlap the run's bookkeeping and checkpoint read instead of following them
(:class:`RecallAhead`). The node uses that result when it was started for the same text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from graph.context import Context
from graph.ports import FactPort, MemoryPort, QueryVector, Recalled, TurnPorts

log = logging.getLogger(__name__)

Recall = Callable[[QueryVector | None], Awaitable[list[Recalled]]]


@dataclass(frozen=True)
class RecallAhead:
    """Recall started before the graph ran, for ``text`` (the turn's last human message)."""

    text: str
    result: asyncio.Future[list[Recalled]]

    @classmethod
    def start(cls, ports: TurnPorts, ctx: Context, text: str) -> RecallAhead:
        return cls(text, asyncio.ensure_future(recall(ports, ctx, text)))

    def cancel(self) -> None:
        """Stop it if the turn ends (or restarts its recall) without using it."""
        if not self.result.done():
            self.result.cancel()


async def recall(ports: TurnPorts, ctx: Context, text: str) -> list[Recalled]:
    """What the stores know that bears on ``text``, each source's hits in its own order.

    A store that fails degrades recall, never the turn: its error is logged and the other
    sources still answer.
    """
    recalled: list[Recalled] = []
    recalls = _recalls(ports, ctx, text)
    if not text or not recalls:
        return recalled
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
            *(source(vector) for _, source in recalls), return_exceptions=True
        )
    finally:
        if vector is not None and not vector.done():
            vector.cancel()
        elif vector is not None and not vector.cancelled():
            vector.exception()  # retrieved, so a failed embedding is not logged as unawaited
    for (name, _), result in zip(recalls, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):  # a broken store must not break chat
            log.error("recall failed in %s: %r", name, result)
        else:
            recalled.extend(_tracked(r) for r in result)
    return recalled


def _tracked(item: Recalled) -> Recalled:
    """The record as the thread state keeps it: the prompt text as recalled (the store already
    fitted it to the token budget), the score rounded, nothing else a store may have added."""
    return Recalled(
        kind=item["kind"],
        text=item["text"],
        score=round(float(item["score"]), 4),
        source=item["source"],
    )


def _recalls(ports: TurnPorts, ctx: Context, text: str) -> list[tuple[str, Recall]]:
    """The recall sources configured for this process, bound to this turn's request."""
    sources: list[tuple[str, Recall]] = []
    memory: MemoryPort | None = ports.memory
    if memory is not None:
        sources.append(
            (
                "memory",
                lambda vector: memory.recall(
                    ctx.user_id,
                    text,
                    k=ctx.recall_k,
                    token_budget=ctx.recall_tokens,
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
                    ctx.user_id,
                    text,
                    hops=ctx.kg_hops,
                    token_budget=ctx.kg_tokens,
                    query_vector=vector,
                ),
            )
        )
    return sources
