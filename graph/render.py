"""Turning state and recalled memory into prompt text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from graph import prompts
from graph.ports import Recalled


def last_human_text(messages: Sequence[BaseMessage]) -> str:
    """The newest user message: what recall searches with."""
    human, _ = last_exchange(messages)
    return "" if human is None else human.text


def last_exchange(messages: Sequence[BaseMessage]) -> tuple[HumanMessage | None, str]:
    """The newest user message and the assistant question it answers ("" if none).

    Both extractors read exactly this, so they can never see different questions. The
    assistant message right before counts only if it asks something: "Where do you live?"
    gives "Berlin" its meaning, while a plain earlier reply is left out, since a small model
    takes facts from it. The reply after the user's message is never shown: memories and
    facts come from the user's own words.
    """
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, HumanMessage):
            before = messages[i - 1] if i > 0 else None
            asked = before.text if isinstance(before, AIMessage) and "?" in before.text else ""
            return message, asked
    return None, ""


_PLEASANTRIES = frozenset(
    {"hi", "hello", "hey", "thanks", "thank you", "ok", "okay", "bye", "yes", "no", "cool"}
)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def worth_extracting(text: str) -> bool:
    """Whether a user message can state a fact, so extraction is worth a model call.

    Both extractors skip pleasantries and messages made only of questions ("Where do I
    live?"): a question states nothing to remember, and on a local model each skipped call
    saves 10-25 s of prompt processing. A message with any statement is extracted.
    """
    words = " ".join(text.casefold().strip(" .!?").split())
    if sum(c.isalpha() for c in words) < 2 or words in _PLEASANTRIES:
        return False
    sentences = [s.strip() for s in _SENTENCE.findall(text) if any(c.isalpha() for c in s)]
    return not sentences or not all(s.endswith("?") for s in sentences)


def system_message(summary: str, recalled: Sequence[Recalled]) -> SystemMessage:
    """One system message carrying the summary and this turn's recalled memory."""
    parts = [prompts.SYSTEM_PROMPT.format(now=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))]
    if summary:
        parts.append(prompts.SUMMARY_SECTION.format(summary=summary))
    memories = [r["text"] for r in recalled if r["kind"] == "memory"]
    if memories:
        parts.append(
            prompts.MEMORIES_SECTION.format(memories="\n".join(f"- {m}" for m in memories))
        )
    facts = [r["text"] for r in recalled if r["kind"] == "fact"]
    if facts:
        parts.append(prompts.FACTS_SECTION.format(facts="\n".join(f"- {f}" for f in facts)))
    return SystemMessage(content="".join(parts))


def transcript(messages: Sequence[BaseMessage]) -> str:
    """Plain-text rendering for the summarizer: only what was actually said."""
    lines = []
    for message in messages:
        role = "User" if isinstance(message, HumanMessage) else "Assistant"
        if message.type in ("human", "ai") and message.text:
            lines.append(f"{role}: {message.text}")
    return "\n".join(lines)
