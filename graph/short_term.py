"""Short-term memory strategies: which messages the prompt sees, and which get folded away.

Pure functions of the message list and the context, so every strategy is testable without a
model or a database, and the nodes stay thin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately

from graph.context import Context


def _human_starts(messages: Sequence[BaseMessage]) -> list[int]:
    return [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]


def _from_nth_last_exchange(messages: Sequence[AnyMessage], n: int) -> list[AnyMessage]:
    """The last ``n`` exchanges, cut on a human message so no reply loses its question."""
    starts = _human_starts(messages)
    if not starts:
        return list(messages)
    cut = starts[-n] if n <= len(starts) else starts[0]
    return list(messages[cut:])


def prompt_messages(messages: Sequence[AnyMessage], ctx: Context) -> list[AnyMessage]:
    """The slice of history the model sees this turn under ``ctx.strategy``."""
    if not messages:
        return []
    strategy = ctx.strategy
    if strategy == "buffer":
        return list(messages)
    if strategy == "window":
        # The current, unanswered question opens the newest exchange.
        return _from_nth_last_exchange(messages, max(1, ctx.window_k))
    if strategy == "summary":
        return _from_nth_last_exchange(messages, 2)
    budget = ctx.max_tokens if strategy == "tokens" else ctx.summary_trigger_tokens
    trimmed: list[Any] = trim_messages(
        list(messages),
        max_tokens=budget,
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )
    # A single oversized question still has to reach the model.
    return trimmed or [messages[-1]]


def messages_to_fold(messages: Sequence[AnyMessage], ctx: Context) -> list[AnyMessage]:
    """Messages to fold into the summary and remove from state after this turn's reply.

    ``summary`` keeps only the last exchange. ``summary_buffer`` waits until the thread passes
    ``summary_trigger_tokens`` and then keeps the newest exchanges that fit ``buffer_tokens``
    (always at least the last one), so the summarizer runs every few turns, not every turn.
    """
    starts = _human_starts(messages)
    if len(starts) < 2:
        return []
    if ctx.strategy == "summary":
        return list(messages[: starts[-1]])
    if ctx.strategy != "summary_buffer":
        return []
    if count_tokens_approximately(messages) <= ctx.summary_trigger_tokens:
        return []
    keep_from = starts[-1]
    for start in reversed(starts[:-1]):
        if count_tokens_approximately(messages[start:]) > ctx.buffer_tokens:
            break
        keep_from = start
    return list(messages[:keep_from])
