"""Fold old messages into the rolling summary so a thread's state stays bounded."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage, RemoveMessage, SystemMessage
from langgraph.runtime import Runtime

from graph import prompts
from graph.context import Context, after_reply
from graph.ports import ports_of
from graph.render import transcript
from graph.short_term import messages_to_fold
from graph.state import AgentState


async def summarize(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Summarize and remove the messages the strategy no longer keeps; a no-op otherwise.

    The old messages leave the state through ``RemoveMessage`` only after the new summary
    exists, so a failed summarization loses nothing: the next turn simply tries again.
    """
    ctx = runtime.context or Context()
    fold = messages_to_fold(state.get("messages", []), ctx)
    if not fold:
        return {}
    await after_reply(ctx)
    ports = ports_of(ctx.services)
    request = [
        SystemMessage(content=prompts.SUMMARIZE_SYSTEM.format(max_words=250)),
        HumanMessage(
            content=prompts.SUMMARIZE_INPUT.format(
                transcript=transcript(fold), summary=state.get("summary", "") or "(none)"
            )
        ),
    ]
    result = await ports.chat_model().ainvoke(request)
    return {
        "summary": result.text.strip(),
        "messages": [RemoveMessage(id=m.id) for m in fold if m.id is not None],
    }
