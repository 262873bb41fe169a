"""The knowledge graph as the turn sees it: one object that recalls facts and writes them.

It implements ``graph.ports.FactPort`` over the Bolt store, the Postgres outbox and the
recall caches, so a node writes triples with one call and the name list and vectors of the
next turn's recall are warmed in the same place. Lifecycle code forgets a user through
:meth:`KnowledgeGraph.forget`, which reaches every cache this process keeps for them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from langchain_core.embeddings import Embeddings

from graph.facts import (
    SINGLE_VALUED,
    Triple,
    normalize_entity,
    normalize_object,
    normalize_predicate,
)
from graph.ports import Recalled, TripleFate, TripleOutcome, shown
from stores.errors import ServiceUnavailable
from stores.knowledge.bolt import SERVICE, GraphStore
from stores.knowledge.outbox import GraphOutbox, WriteOutcome, write_or_enqueue
from stores.knowledge.recall import FactRecall
from stores.knowledge.rules import Fact, prepare

log = logging.getLogger(__name__)


_WHERE: dict[WriteOutcome, tuple[TripleFate, str]] = {
    "graph": ("stored", ""),
    "outbox": ("queued", "graph server unavailable: queued in the outbox for replay"),
    "skipped": ("dropped", "graph server unavailable and no outbox"),
}


def write_outcomes(triples: Sequence[Triple], where: WriteOutcome) -> list[TripleOutcome]:
    """Each triple's outcome once the batch went ``where``, in order.

    The batch is normalized as the graph store does (``rules.prepare``): a triple that left
    nothing to store (empty or self-referential), or that a later value for the same
    single-valued relation replaced within the batch, is reported as dropped.
    """
    kept = {(row["s"], row["p"], row["o"]) for row in prepare(triples)}
    fate, note = _WHERE[where]
    out: list[TripleOutcome] = []
    for t in triples:
        s, p = normalize_entity(t.subject), normalize_predicate(t.predicate)
        o = normalize_object(p, normalize_entity(t.object))
        if (s, p, o) in kept:
            this, reason = fate, note
        elif not s or not p or not o:
            this, reason = "dropped", "empty after normalization"
        elif s == o:
            this, reason = "dropped", "subject and object are the same"
        elif p in SINGLE_VALUED:
            this, reason = "dropped", "replaced by a later value in the same message"
        else:
            this, reason = "dropped", "over the per-turn limit"
        record = TripleOutcome(
            subject=shown(t.subject),
            predicate=shown(t.predicate),
            object=shown(t.object),
            confidence=round(t.confidence, 3),
            outcome=this,
        )
        if reason:
            record["reason"] = reason
        out.append(record)
    return out


class KnowledgeGraph:
    """Graph store + outbox + recall caches; ``graph`` is ``None`` while no server is known."""

    def __init__(
        self,
        graph: GraphStore | None,
        outbox: GraphOutbox | None,
        embeddings: Embeddings | None,
    ) -> None:
        self.graph = graph
        self.outbox = outbox
        self.recaller = FactRecall(graph, embeddings) if graph is not None else None

    async def recall(
        self,
        user_id: str,
        text: str,
        *,
        hops: int,
        token_budget: int,
        query_vector: Awaitable[Sequence[float] | None] | None = None,
    ) -> list[Recalled]:
        """Current facts around what the message names; nothing while no graph is known."""
        if self.recaller is None:
            return []
        return await self.recaller.recall(
            user_id, text, hops=hops, token_budget=token_budget, query_vector=query_vector
        )

    async def write(
        self,
        user_id: str,
        triples: Sequence[Triple],
        *,
        thread_id: str | None,
        message_id: str | None,
        at_ms: int,
    ) -> list[TripleOutcome]:
        """Write to the graph (or queue), then list and embed the new names for recall.

        Returns each triple's outcome, in order: "stored" in the graph, "queued" in the
        outbox while the graph is down, or "dropped" with the reason.
        """
        outcome = await write_or_enqueue(
            self.graph,
            self.outbox,
            user_id,
            list(triples),
            thread_id=thread_id,
            message_id=message_id,
            at_ms=at_ms,
        )
        if outcome == "graph" and self.recaller is not None:
            names = [n for row in prepare(triples) for n in (row["s"], row["o"])]
            try:
                await self.recaller.entities_written(user_id, names)
            except Exception:  # only a cache warm-up; recall embeds the names itself if need be
                log.warning("could not embed new entity names", exc_info=True)
        return write_outcomes(triples, outcome)

    async def export_user(self, user_id: str) -> dict[str, Any]:
        """The user's graph and queued writes, as the export document's two sections."""
        return {
            "graph": (
                await self.graph.export_user(user_id)
                if self.graph is not None
                else {"entities": [], "relations": []}
            ),
            "graph_outbox": await self.outbox.pending(user_id) if self.outbox is not None else [],
        }

    async def import_user(
        self, user_id: str, entities: Sequence[Mapping[str, Any]], relations: Sequence[Fact]
    ) -> dict[str, int]:
        """Restore an export's graph for ``user_id`` (see ``GraphStore.import_user``) and drop
        this process's recall caches of the user, which would not list the restored names.

        Needs the graph server itself: queued writes are triples to re-apply, not a restore
        of given ids and times. Like every graph write, it checks the user's tombstone after
        writing and undoes itself if the user was deleted meanwhile (``Gone``).
        """
        if self.graph is None:
            raise ServiceUnavailable(SERVICE, "no graph server is configured in this process")
        try:
            counts = await self.graph.import_user(user_id, entities, relations)
            if self.outbox is not None:
                await self.outbox.undo_if_gone(self.graph, user_id)
        finally:
            self.forget(user_id)
        return counts

    async def delete_user(self, user_id: str) -> dict[str, int]:
        """Delete the user's graph and queued writes and forget every cache of theirs; returns
        what was removed. Caches are dropped before and after, so a recall racing the delete
        cannot leave a copy behind."""
        self.forget(user_id)
        counts: dict[str, int] = {}
        if self.graph is not None:
            counts.update(await self.graph.delete_user(user_id))
        if self.outbox is not None:
            counts["graph_outbox"] = await self.outbox.delete_user(user_id)
        self.forget(user_id)
        return counts

    def forget(self, user_id: str) -> None:
        """Drop every cache this process keeps for the user (after a delete)."""
        if self.recaller is not None:
            self.recaller.forget(user_id)

    async def aclose(self) -> None:
        """Stop background refreshes."""
        if self.recaller is not None:
            await self.recaller.aclose()
