"""After the reply: turn the last exchange into long-term memory items (fact, preference,
semantic) and store them for the user, merging near-duplicates.

It runs after ``call_model``, so the model's words never become memory mid-turn, and items
must come from the user's own message (the reply is context, not a source). It never raises
into the turn: the answer is already out, so a failed extraction or write is logged,
skipped, and reported in the turn's ``extracted`` record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph import prompts
from graph.context import Context, after_reply
from graph.ports import Extracted, MemoryOutcome, ports_of, shown
from graph.render import last_exchange, worth_extracting
from graph.state import AgentState

log = logging.getLogger(__name__)

MAX_ITEMS_PER_TURN = 8
MAX_INPUT_CHARS = 4000


class ExtractedMemory(BaseModel):
    """One thing worth remembering about the user."""

    type: Literal["fact", "preference", "semantic"] = Field(
        description="fact (about the user's life), preference (likes/dislikes/habits), "
        "or semantic (general knowledge the user wants kept)"
    )
    text: str = Field(description="One short self-contained sentence, third person.")
    importance: float = Field(ge=0.0, le=1.0, description="0-1; 0.9 identity/health/family")
    subject: str | None = Field(
        default=None,
        description="Optional stable key for single-valued facts, e.g. 'user.home_city', so "
        "a later change replaces the old value.",
    )
    source_ids: list[str] = Field(
        default_factory=list, description="Ids of the messages this item comes from."
    )


class ExtractedMemories(BaseModel):
    """Everything worth remembering from the last exchange (often nothing)."""

    items: list[ExtractedMemory] = Field(default_factory=list)


def exchange_messages(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages the extractor sees: the assistant's question (if it asked one), then the
    newest user message (``graph.render.last_exchange``)."""
    human, question = last_exchange(messages)
    if human is None:
        return []
    return [AIMessage(content=question), human] if question else [human]


def _render(messages: Sequence[BaseMessage]) -> str:
    """One line per message; only the user's messages carry an id the model may cite.

    A small model often cited the assistant's question as an item's source, and such items
    are dropped, so facts the user plainly stated were lost.
    """
    lines = []
    for m in messages:
        if isinstance(m, HumanMessage):
            lines.append(f"{m.id or '-'}: user: {m.text[:MAX_INPUT_CHARS]}")
        else:
            lines.append(f"-: assistant: {m.text[:MAX_INPUT_CHARS]}")
    return "\n".join(lines)


async def extract_memories(
    extractor: Runnable[Any, Any], messages: Sequence[BaseMessage]
) -> list[ExtractedMemory]:
    """Ask the model for items; keep those that cite (or default to) the user's message.

    ``extractor`` is the chat model bound to :class:`ExtractedMemories`
    (``TurnPorts.structured``, or ``graph.structured.structured`` outside a turn).
    """
    kept, _ = await screen_memories(extractor, messages)
    return kept


async def screen_memories(
    extractor: Runnable[Any, Any], messages: Sequence[BaseMessage]
) -> tuple[list[ExtractedMemory], list[MemoryOutcome]]:
    """:func:`extract_memories`, also returning the items it dropped and why."""
    human_ids = {m.id for m in messages if isinstance(m, HumanMessage) and m.id}
    prompt = [
        SystemMessage(content=prompts.EXTRACT_MEMORIES_SYSTEM),
        HumanMessage(content=prompts.EXTRACT_MEMORIES_INPUT.format(messages=_render(messages))),
    ]
    result = await extractor.ainvoke(prompt)
    if result is None:
        return [], []
    parsed = (
        result
        if isinstance(result, ExtractedMemories)
        else ExtractedMemories.model_validate(result)
    )
    kept: list[ExtractedMemory] = []
    dropped: list[MemoryOutcome] = []
    for item in parsed.items[:MAX_ITEMS_PER_TURN]:
        if not item.text.strip():
            continue
        cited = [s for s in item.source_ids if s in human_ids]
        if item.source_ids and not cited:
            log.debug("dropped a memory sourced only from assistant messages")
            dropped.append(
                MemoryOutcome(
                    kind=item.type,
                    text=shown(item.text),
                    outcome="dropped",
                    reason="sourced only from assistant messages",
                )
            )
            continue
        item.source_ids = cited or sorted(human_ids)
        kept.append(item)
    return kept, dropped


async def write_memory(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Extract items from the last exchange and store them for ``context.user_id``.

    Its state update is the turn's ``extracted["memories"]``: each item added, merged into a
    near-duplicate, or dropped (and why), or ``extracted["skipped"]["memories"]`` saying why
    nothing was extracted. Every failure is logged and the turn goes on.
    """
    turn = state.get("turn", 0)
    try:
        ctx = runtime.context or Context()
        await after_reply(ctx)
        exchange = exchange_messages(state.get("messages", []))
        if not exchange:
            return {}
        if not worth_extracting(exchange[-1].text):
            return _skipped(turn, "nothing stated (a question or a pleasantry)")
        ports = ports_of(ctx.services)
        memory = ports.memory
        if memory is None:
            return _skipped(turn, "no long-term memory in this process")
        items, dropped = await screen_memories(ports.structured(ExtractedMemories), exchange)
    except Exception as exc:  # the reply is already out; memory must not fail the turn
        log.warning("memory write skipped: %s: %s", type(exc).__name__, exc)
        return _skipped(turn, f"extraction failed: {type(exc).__name__}")
    redact = ports.redact
    said_at = datetime.now(UTC)
    outcomes: list[MemoryOutcome] = []
    for item in items:
        text = redact(item.text) if redact is not None else item.text
        try:
            stored = await memory.add(
                ctx.user_id,
                text,
                event_at=said_at,
                kind=item.type,
                importance=item.importance,
                provenance=item.source_ids,
                subject=item.subject,
                metadata={"source": "conversation"},
            )
        except Exception as exc:
            log.warning("memory write skipped: %s: %s", type(exc).__name__, exc)
            outcomes.append(
                MemoryOutcome(
                    kind=item.type,
                    text=shown(text),
                    outcome="dropped",
                    reason=f"write failed: {type(exc).__name__}",
                )
            )
            continue
        outcomes.append(
            MemoryOutcome(
                kind=item.type,
                text=shown(text),
                outcome="merged" if stored.seen_count > 1 else "added",
                id=str(stored.id),
            )
        )
    if items:
        log.debug("wrote %d memories for %s", len(items), ctx.user_id)
    return {"extracted": Extracted(turn=turn, memories=[*outcomes, *dropped])}


def _skipped(turn: int, why: str) -> dict[str, Any]:
    return {"extracted": Extracted(turn=turn, memories=[], skipped={"memories": why})}
