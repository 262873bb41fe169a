"""After the reply: turn what the user said into knowledge-graph triples and store them.

It runs after ``call_model``, so a model's own words never become memory mid-turn, and it
never raises into the turn: an LLM failure skips extraction, a graph outage queues the
triples in the Postgres outbox (``stores.outbox``) for replay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime

from graph import prompts
from graph.context import Context, after_reply
from graph.kg import (
    MAX_TRIPLES_PER_TURN,
    ExtractedTriples,
    Triple,
    alias_self,
    attribute_subjects,
    grounded,
)
from graph.render import worth_extracting
from graph.state import AgentState

log = logging.getLogger(__name__)

Redactor = Callable[[str], str]

MAX_INPUT_CHARS = 4000
MIN_CONFIDENCE = 0.5


def exchange(messages: Sequence[BaseMessage]) -> tuple[HumanMessage | None, str]:
    """The last human message and the assistant question it may answer.

    The assistant message before it counts as a question only if it asks one ("Where do
    you live?" gives "Berlin" its meaning); a plain earlier reply is left out, since a small
    model otherwise takes facts from it.
    """
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, HumanMessage):
            before = next((m.text for m in reversed(messages[:i]) if isinstance(m, AIMessage)), "")
            return message, before if "?" in before else ""
    return None, ""


async def extract_triples(
    model: BaseChatModel,
    user_text: str,
    question_text: str = "",
    *,
    redact: Redactor | None = None,
    min_confidence: float = MIN_CONFIDENCE,
) -> list[Triple]:
    """Ask the model for triples, then keep only confident ones grounded in the user's words.

    Structured output uses ``method="function_calling"`` because llama.cpp's OpenAI server
    rejects ``json_schema`` response formats. The model sees, and grounding uses, the
    user's message plus the question it answered ("Where do you live?" / "Berlin"). The
    reply after it is not shown: it cannot ground a fact, and on a small model it pulled
    facts onto the wrong subject ("Osaka is lovely! Do you visit her often?").
    """
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
    from stores.llm import structured as structured_output

    structured = structured_output(model, ExtractedTriples)
    result = await structured.ainvoke(prompt)
    if result is None:
        return []
    parsed = (
        result if isinstance(result, ExtractedTriples) else ExtractedTriples.model_validate(result)
    )
    source = f"{question_text}\n{user_text}"
    kept: list[Triple] = []
    named = alias_self(parsed.triples[:MAX_TRIPLES_PER_TURN], user_text)
    for triple in attribute_subjects(named, user_text):
        if redact is not None:
            triple = Triple(
                subject=redact(triple.subject),
                predicate=triple.predicate,
                object=redact(triple.object),
                confidence=triple.confidence,
            )
        if triple.confidence < min_confidence or not grounded(triple, source):
            log.debug("dropped ungrounded or unsure triple %s", triple.predicate)
            continue
        kept.append(triple)
    return kept


def _thread_id() -> str | None:
    try:
        value = get_config().get("configurable", {}).get("thread_id")
    except RuntimeError:  # called outside a graph run (benches, direct calls)
        return None
    return None if value is None else str(value)


async def extract_knowledge(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Extract triples from the last exchange and store them (or queue them). Writes no state."""
    from stores.outbox import write_or_enqueue
    from stores.services import services_for

    ctx = runtime.context or Context()
    human, question = exchange(state.get("messages", []))
    if human is None or not worth_extracting(human.text):
        return {}
    await after_reply(ctx)
    services = await services_for(runtime)
    if services.graph is None and services.outbox is None:
        return {}  # no knowledge graph configured in this process
    at_ms = int(time.time() * 1000)
    try:
        triples = await extract_triples(
            services.chat_model(), human.text, question, redact=services.redact
        )
    except Exception as exc:  # an LLM failure must not fail the turn
        log.warning("knowledge extraction skipped: %s", type(exc).__name__)
        return {}
    try:
        outcome = await write_or_enqueue(
            services.graph,
            services.outbox,
            ctx.user_id,
            triples,
            thread_id=_thread_id(),
            message_id=human.id,
            at_ms=at_ms,
        )
        log.debug("knowledge: %d triples -> %s", len(triples), outcome)
    except Exception:  # e.g. Postgres also down: log it, the reply is already out
        log.exception("knowledge write failed; %d triples lost", len(triples))
        return {}
    if outcome == "graph":
        from graph.kg import prepare
        from graph.kg_recall import entities_written

        names = [n for row in prepare(triples) for n in (row["s"], row["o"])]
        try:
            await entities_written(services.embeddings, ctx.user_id, names)
        except Exception:  # only a cache warm-up; recall embeds the names itself if need be
            log.warning("could not embed new entity names", exc_info=True)
    return {}
