"""What the MCP tools do, as plain async functions over the process's services and one user.

They take the user id from the caller (the credential on HTTP, ``--user`` on stdio), never
from a tool argument, so one user cannot name another's data. They check their input with the
rules the REST routes and the stores use (``mnemograph.validation``, ``stores.ids``,
``stores.memory.model``) before anything is written, raise :class:`stores.errors.InvalidInput`
or :class:`stores.errors.NotFound` with a message a model can act on, and answer small JSON
(TypedDicts, so the SDK can publish output schemas).

``recall`` runs the turn's own recall node (``nodes.load_memory``) on the message, so what it
answers is what the prompt would carry: the same ranking, the same token budgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from graph.context import Context
from graph.facts import MAX_ENTITY_CHARS, USER_ENTITY, normalize_entity
from graph.ports import Recalled
from graph.state import AgentState
from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from mnemograph.validation import to_messages
from nodes.load_memory import load_memory
from stores.errors import InvalidInput, ServiceUnavailable
from stores.ids import check_id
from stores.knowledge.bolt import GraphStore
from stores.knowledge.rules import Fact
from stores.memory.model import check_kind, check_text
from stores.memory.store import MemoryStore

MAX_QUERY_CHARS = 2000
"""Longest search query, as ``GET /memories?query=``."""
MAX_K = 100
"""Most memories one search returns, as ``GET /memories?k=``."""
MAX_FACTS = 500
"""Most facts one listing returns: outputs stay small enough for a model's context."""


class MemoryOut(TypedDict):
    """One memory as a tool shows it (the REST item without its bookkeeping)."""

    id: str
    text: str
    kind: str
    importance: float
    created_at: str


class ScoredMemory(MemoryOut):
    """A search hit: the memory and its blended score in [0, 1]."""

    score: float


class SearchResult(TypedDict):
    query: str
    memories: list[ScoredMemory]


class AddResult(TypedDict):
    """The stored memory; ``outcome`` is "merged" when it folded into a near-duplicate."""

    outcome: str
    memory: MemoryOut


class DeleteResult(TypedDict):
    deleted: str


class FactOut(TypedDict):
    """One knowledge-graph relation; ``invalid_at`` is set once a newer value replaced it."""

    id: str
    subject: str
    predicate: str
    object: str
    confidence: float
    valid_from: str
    invalid_at: str | None


class FactsResult(TypedDict):
    entity: str | None
    facts: list[FactOut]
    truncated: bool


class RecalledOut(TypedDict):
    """One recalled line as the prompt carries it, with its score and where it came from."""

    text: str
    score: float
    source: str


class Budgets(TypedDict):
    memories: int
    memory_tokens: int
    fact_tokens: int
    hops: int


class RecallResult(TypedDict):
    query: str
    memories: list[RecalledOut]
    facts: list[RecalledOut]
    budgets: Budgets


class ChatResult(TypedDict):
    thread_id: str
    reply: str


def _memory_store(services: Services) -> MemoryStore:
    if services.memory is None:
        raise ServiceUnavailable("long-term memory", "not configured on this server")
    return services.memory


def _graph_store(services: Services) -> GraphStore:
    graph = services.graph
    if graph is None:
        raise ServiceUnavailable("graph server", "not configured on this server")
    return graph


def _iso_ms(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _entity(entity: str | None) -> str | None:
    """The canonical entity name (``"me"`` → ``"user"``); ``None`` for no filter."""
    if entity is None:
        return None
    if len(entity) > MAX_ENTITY_CHARS:
        raise InvalidInput(f"entity longer than {MAX_ENTITY_CHARS} characters")
    name = normalize_entity(entity)
    if not name:
        raise InvalidInput(f"entity {entity!r} names nothing (empty after normalization)")
    return name


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FACTS:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_FACTS}, got {limit!r}")
    return limit


def _fact(fact: Fact) -> FactOut:
    return FactOut(
        id=fact["id"],
        subject=fact["subject_display"],
        predicate=fact["predicate"],
        object=fact["object_display"],
        confidence=round(fact["confidence"], 3),
        valid_from=_iso_ms(fact["valid_from"]) or "",
        invalid_at=_iso_ms(fact["invalid_at"]),
    )


def _facts(entity: str | None, facts: Sequence[Fact], limit: int) -> FactsResult:
    """Oldest first, the first ``limit`` of them, saying whether more were left out."""
    ordered = sorted(facts, key=lambda f: (f["created_at"], f["id"]))
    return FactsResult(
        entity=entity,
        facts=[_fact(f) for f in ordered[:limit]],
        truncated=len(ordered) > limit,
    )


def _user_text(text: str) -> str:
    """One user message checked as every door checks it (length, control characters)."""
    if not isinstance(text, str):
        raise InvalidInput("the message must be a string")
    return str(to_messages([{"role": "user", "content": text}])[0].content)


async def search_memories(
    services: Services, user_id: str, query: str, k: int = 10
) -> SearchResult:
    """Hybrid search (full text and vectors, blended with importance and recency) of the
    user's memories, best first: the ranking the agent recalls with."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("query is empty: say what to look for")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query longer than {MAX_QUERY_CHARS} characters")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    hits = await _memory_store(services).search(user_id, query, k)
    return SearchResult(
        query=query,
        memories=[
            ScoredMemory(
                id=h.item.id,
                text=h.item.text,
                kind=h.item.kind,
                importance=round(h.item.importance, 3),
                created_at=h.item.created_at.isoformat(),
                score=round(h.score, 4),
            )
            for h in hits
        ],
    )


async def add_memory(
    services: Services, user_id: str, text: str, kind: str = "fact", importance: float = 0.5
) -> AddResult:
    """Remember one statement; a near-duplicate is merged into the existing memory (which
    then counts as seen again) instead of being stored twice. PII redaction applies, as to
    every memory write."""
    check_text(text)
    check_kind(kind)
    if (
        isinstance(importance, bool)
        or not isinstance(importance, int | float)
        or math.isnan(importance)
        or not 0.0 <= importance <= 1.0
    ):
        raise InvalidInput(f"importance must be a number in [0, 1], got {importance!r}")
    memory = _memory_store(services)
    if services.redact is not None:
        text = services.redact(text)
    item = await memory.add(user_id, text, kind=kind, importance=float(importance))
    return AddResult(
        outcome="merged" if item.seen_count > 1 else "added",
        memory=MemoryOut(
            id=item.id,
            text=item.text,
            kind=item.kind,
            importance=round(item.importance, 3),
            created_at=item.created_at.isoformat(),
        ),
    )


async def delete_memory(services: Services, user_id: str, memory_id: str) -> DeleteResult:
    """Forget one memory of the user; another user's id is simply not found."""
    check_id("memory id", memory_id)
    await _memory_store(services).delete(user_id, memory_id)
    return DeleteResult(deleted=memory_id)


async def current_facts(
    services: Services, user_id: str, entity: str | None = None, limit: int = 100
) -> FactsResult:
    """The user's still-valid facts, oldest first; with ``entity``, those touching it."""
    name, limit = _entity(entity), _limit(limit)
    graph = _graph_store(services)
    if name is None:
        # One more than asked, to tell the caller whether the list was cut.
        return _facts(None, await graph.current_facts(user_id, limit=limit + 1), limit)
    return _facts(name, await graph.neighbourhood(user_id, [name], hops=1, limit=limit + 1), limit)


async def fact_history(
    services: Services, user_id: str, entity: str | None = None, limit: int = 100
) -> FactsResult:
    """Every fact the user's graph holds, replaced ones included (``invalid_at`` set),
    oldest first; with ``entity``, those touching it."""
    name, limit = _entity(entity), _limit(limit)
    graph = _graph_store(services)
    if name is None:
        return _facts(None, await graph.history(user_id, limit=limit + 1), limit)
    facts = await graph.history(user_id)
    return _facts(name, [f for f in facts if name in (f["subject"], f["object"])], limit)


async def profile(services: Services, user_id: str, entity: str = USER_ENTITY) -> FactsResult:
    """Current facts about one entity (by default the user themselves: their profile)."""
    return await current_facts(services, user_id, entity, MAX_FACTS)


def _recalled(items: Sequence[Recalled], kind: str) -> list[RecalledOut]:
    return [
        RecalledOut(text=r["text"], score=r["score"], source=r["source"])
        for r in items
        if r["kind"] == kind
    ]


async def recall(services: Services, user_id: str, query: str) -> RecallResult:
    """What the agent would put in its prompt if the user sent ``query`` now: the turn's own
    recall node on that message, with the default budgets of a turn."""
    text = _user_text(query)
    ctx = Context(user_id=user_id, services=services)
    messages: list[BaseMessage] = list(to_messages([{"role": "user", "content": text}]))
    state: AgentState = {"messages": messages}  # type: ignore[typeddict-item]
    update: dict[str, Any] = await load_memory(state, Runtime(context=ctx))
    recalled: list[Recalled] = update.get("recalling", [])
    return RecallResult(
        query=text,
        memories=_recalled(recalled, "memory"),
        facts=_recalled(recalled, "fact"),
        budgets=Budgets(
            memories=ctx.recall_k,
            memory_tokens=ctx.recall_tokens,
            fact_tokens=ctx.kg_tokens,
            hops=ctx.kg_hops,
        ),
    )


async def chat(runner: TurnRunner, user_id: str, thread_id: str, message: str) -> ChatResult:
    """One turn in one of the user's threads (created on first use; ids are per user, so
    another user's id is simply a new thread), through the runner every door uses: same
    lock, same memory work after the reply."""
    check_id("thread id", thread_id)
    text = _user_text(message)
    values = await runner.invoke(
        user_id, thread_id, [{"role": "user", "content": text}],
        config={"metadata": {"door": "mcp"}},
    )  # fmt: skip
    messages: list[BaseMessage] = values.get("messages", [])
    reply = messages[-1].text if messages else ""
    return ChatResult(thread_id=thread_id, reply=reply)
