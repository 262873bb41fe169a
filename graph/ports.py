"""The ports: what the nodes need from the world, as Protocols the stores implement.

Nodes import ``graph/`` only. They reach storage and models through :class:`TurnPorts`,
found in the run's context (``Context.services``), so a node can be tested with any object
of the right shape and no adapter module is imported by the state machine. The records that
cross the ports (:class:`Recalled`, and the outcomes of writes: :class:`TripleOutcome`,
:class:`MemoryOutcome`) are defined here too, so adapters depend on this module and never on
the graph's runtime code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Protocol, cast

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import BaseModel
from typing_extensions import TypedDict

if TYPE_CHECKING:
    from graph.facts import Triple

Redactor = Callable[[str], str]
"""Masks personal data in a text before it is written to long-term stores."""

QueryVector = Awaitable[Sequence[float] | None]
"""The message's embedding, computed once per turn and shared by both recalls."""


class Recalled(TypedDict):
    """One piece of memory recalled for this turn, kept with where it came from."""

    kind: str
    """'memory' (long-term item) or 'fact' (knowledge-graph relation)."""
    text: str
    score: float
    source: str
    """Store key or relation id, so the caller can trace a recalled line back."""


SHOWN_CHARS = 300
"""Longest text an outcome record keeps: they are shown in thread state, not used."""

TripleFate = Literal["stored", "queued", "dropped"]
"""Where an extracted triple went: the graph, the outbox (graph down), or nowhere."""


class TripleOutcome(TypedDict):
    """One extracted triple and what became of it, for the turn's ``extracted`` state."""

    subject: str
    predicate: str
    object: str
    confidence: float
    outcome: TripleFate
    reason: NotRequired[str]
    """Why it was dropped (or queued): "not grounded in the user's words", "graph down"…"""


MemoryFate = Literal["added", "merged", "dropped"]
"""What a memory write did: a new item, merged into a near-duplicate, or nothing."""


class MemoryOutcome(TypedDict):
    """One extracted long-term memory and what became of it."""

    kind: str
    text: str
    outcome: MemoryFate
    id: NotRequired[str]
    """The stored item's id (the new one, or the one it merged into)."""
    reason: NotRequired[str]


class Extracted(TypedDict, total=False):
    """What the post-reply nodes made of one turn: small, and replaced every turn."""

    turn: int
    """The turn these outcomes belong to (``AgentState.turn`` after the reply)."""
    triples: list[TripleOutcome]
    memories: list[MemoryOutcome]
    skipped: dict[str, str]
    """Why a node extracted nothing, by part ("triples", "memories")."""


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters for an outcome record."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class StoredMemory(Protocol):
    """What a memory write returns: the item as stored (``seen_count`` > 1 once merged)."""

    @property
    def id(self) -> str: ...

    @property
    def seen_count(self) -> int: ...


class MemoryPort(Protocol):
    """Per-user long-term memory: hybrid recall and deduplicating writes."""

    async def recall(
        self,
        user_id: str,
        text: str,
        *,
        k: int,
        token_budget: int,
        query_vector: QueryVector | None = None,
    ) -> list[Recalled]:
        """The user's items that bear on ``text``, best first, within ``token_budget``."""
        ...

    async def add(
        self,
        user_id: str,
        text: str,
        *,
        event_at: datetime | None = ...,
        kind: str = ...,
        importance: float = ...,
        provenance: Sequence[str] = ...,
        subject: str | None = ...,
        metadata: Mapping[str, Any] | None = ...,
    ) -> StoredMemory:
        """Store one item (or merge it into a near-duplicate); returns the stored item."""
        ...


class FactPort(Protocol):
    """The user's knowledge graph: recall around named entities, and writes that never fail a
    turn (a graph outage queues the triples)."""

    async def recall(
        self,
        user_id: str,
        text: str,
        *,
        hops: int,
        token_budget: int,
        query_vector: QueryVector | None = None,
    ) -> list[Recalled]:
        """Current facts around the entities ``text`` names, best first, within budget."""
        ...

    async def write(
        self,
        user_id: str,
        triples: Sequence[Triple],
        *,
        thread_id: str | None,
        message_id: str | None,
        at_ms: int,
    ) -> list[TripleOutcome]:
        """Store the triples, or queue them; returns each triple's outcome, in order."""
        ...


class TurnPorts(Protocol):
    """Everything a turn may touch. Optional parts are ``None`` when not configured."""

    @property
    def embeddings(self) -> Embeddings | None:
        """The embedder both recalls compare the message with."""
        ...

    @property
    def memory(self) -> MemoryPort | None:
        """Long-term memory, if this process has it."""
        ...

    @property
    def facts(self) -> FactPort | None:
        """The knowledge graph, if this process has it."""
        ...

    @property
    def redact(self) -> Redactor | None:
        """The PII redactor applied before long-term writes, if turned on."""
        ...

    def chat_model(self) -> BaseChatModel:
        """The chat model, built on first use."""
        ...

    def structured(self, schema: type[BaseModel]) -> Runnable[Any, Any]:
        """The chat model bound to answer as ``schema`` (built once per schema)."""
        ...


class PortsMissing(LookupError):
    """A node ran without ports in its context (a host forgot ``Context.services``)."""


def ports_of(services: object) -> TurnPorts:
    """``Context.services`` as ports, or a clear error when a host passed none."""
    if services is None:
        raise PortsMissing(
            "the run has no services: pass Context(services=...) or build the graph with "
            "build_graph(default_ports=...)"
        )
    return cast(TurnPorts, services)
