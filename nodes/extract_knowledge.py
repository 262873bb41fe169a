"""After the reply: turn what the user said into knowledge-graph triples and store them.

It runs after ``call_model``, so a model's own words never become memory mid-turn, and it
never raises into the turn: an LLM failure skips extraction, a graph outage queues the
triples in the Postgres outbox (``stores.knowledge.outbox``) for replay.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.config import get_config
from langgraph.runtime import Runtime

from graph import prompts
from graph.context import Context, after_reply
from graph.facts import (
    MAX_TRIPLES_PER_TURN,
    ExtractedTriples,
    Triple,
    alias_self,
    attribute_subjects,
    grounded,
)
from graph.ports import (
    Extracted,
    Redactor,
    TripleFate,
    TripleOutcome,
    ports_of,
    shown,
)
from graph.render import last_exchange, worth_extracting
from graph.state import AgentState

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 4000
MIN_CONFIDENCE = 0.5


async def extract_triples(
    extractor: Runnable[Any, Any],
    user_text: str,
    question_text: str = "",
    *,
    redact: Redactor | None = None,
    min_confidence: float = MIN_CONFIDENCE,
) -> list[Triple]:
    """Ask the model for triples, then keep only confident ones grounded in the user's words.

    ``extractor`` is the chat model bound to :class:`ExtractedTriples`
    (``TurnPorts.structured``, or ``graph.structured.structured`` outside a turn). The model
    sees, and grounding uses, the user's message plus the question it answered ("Where do
    you live?" / "Berlin"). The reply after it is not shown: it cannot ground a fact, and on
    a small model it pulled facts onto the wrong subject ("Osaka is lovely! Do you visit her
    often?").
    """
    kept, _ = await screen_triples(
        extractor, user_text, question_text, redact=redact, min_confidence=min_confidence
    )
    return kept


async def screen_triples(
    extractor: Runnable[Any, Any],
    user_text: str,
    question_text: str = "",
    *,
    redact: Redactor | None = None,
    min_confidence: float = MIN_CONFIDENCE,
) -> tuple[list[Triple], list[TripleOutcome]]:
    """:func:`extract_triples`, also returning the triples it dropped and why."""
    if redact is not None:
        user_text, question_text = redact(user_text), redact(question_text)
    question_block = (
        prompts.EXTRACT_TRIPLES_QUESTION.format(question=question_text[:MAX_INPUT_CHARS])
        if question_text
        else ""
    )
    prompt = [
        SystemMessage(content=prompts.EXTRACT_TRIPLES_SYSTEM),
        HumanMessage(
            content=prompts.EXTRACT_TRIPLES_INPUT.format(
                question_block=question_block,
                user=user_text[:MAX_INPUT_CHARS],
            )
        ),
    ]
    result = await extractor.ainvoke(prompt)
    if result is None:
        return [], []
    parsed = (
        result if isinstance(result, ExtractedTriples) else ExtractedTriples.model_validate(result)
    )
    source = f"{question_text}\n{user_text}"
    kept: list[Triple] = []
    dropped: list[TripleOutcome] = []
    named = alias_self(parsed.triples[:MAX_TRIPLES_PER_TURN], user_text)
    for triple in attribute_subjects(named, user_text):
        if redact is not None:
            triple = Triple(
                subject=redact(triple.subject),
                predicate=triple.predicate,
                object=redact(triple.object),
                confidence=triple.confidence,
            )
        if triple.confidence < min_confidence:
            reason = f"confidence {triple.confidence:.2f} below {min_confidence:.2f}"
        elif not grounded(triple, source):
            reason = "not grounded in the user's words"
        else:
            kept.append(triple)
            continue
        log.debug("dropped triple %s: %s", triple.predicate, reason)
        dropped.append(triple_outcome(triple, "dropped", reason))
    return kept, dropped


def triple_outcome(triple: Triple, outcome: TripleFate, reason: str = "") -> TripleOutcome:
    """The state record of one triple (texts cut to a displayable length)."""
    record = TripleOutcome(
        subject=shown(triple.subject),
        predicate=shown(triple.predicate),
        object=shown(triple.object),
        confidence=round(triple.confidence, 3),
        outcome=outcome,
    )
    if reason:
        record["reason"] = reason
    return record


def _thread_id() -> str | None:
    try:
        value = get_config().get("configurable", {}).get("thread_id")
    except RuntimeError:  # called outside a graph run (benches, direct calls)
        return None
    return None if value is None else str(value)


async def extract_knowledge(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Extract triples from the last exchange and store them (or queue them).

    Its state update is the turn's ``extracted["triples"]``: every triple the model gave, with
    its outcome (stored, queued, dropped and why), or ``extracted["skipped"]["triples"]``
    saying why nothing was extracted.
    """
    ctx = runtime.context or Context()
    human, question = last_exchange(state.get("messages", []))
    if human is None:
        return {}
    turn = state.get("turn", 0)
    if not worth_extracting(human.text):
        return _skipped(turn, "nothing stated (a question or a pleasantry)")
    await after_reply(ctx)
    ports = ports_of(ctx.services)
    facts = ports.facts
    if facts is None:
        return _skipped(turn, "no knowledge graph in this process")
    at_ms = int(time.time() * 1000)
    try:
        triples, dropped = await screen_triples(
            ports.structured(ExtractedTriples), human.text, question, redact=ports.redact
        )
    except Exception as exc:  # an LLM failure must not fail the turn
        log.warning("knowledge extraction skipped: %s", type(exc).__name__)
        return _skipped(turn, f"extraction failed: {type(exc).__name__}")
    outcomes: list[TripleOutcome] = []
    if triples:
        try:
            outcomes = await facts.write(
                ctx.user_id, triples, thread_id=_thread_id(), message_id=human.id, at_ms=at_ms
            )
            log.debug("knowledge: %d triples written", len(triples))
        except Exception as exc:  # e.g. Postgres also down: log it, the reply is already out
            log.exception("knowledge write failed; %d triples lost", len(triples))
            reason = f"write failed: {type(exc).__name__}"
            outcomes = [triple_outcome(t, "dropped", reason) for t in triples]
    return {"extracted": Extracted(turn=turn, triples=[*outcomes, *dropped])}


def _skipped(turn: int, why: str) -> dict[str, Any]:
    return {"extracted": Extracted(turn=turn, triples=[], skipped={"triples": why})}
