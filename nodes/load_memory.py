"""Recall: gather what the stores know that bears on the new message, before the model runs."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.ports import ports_of
from graph.recall import RecallAhead, recall
from graph.render import last_human_text
from graph.state import AgentState


async def load_memory(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Fill ``recalling`` for this turn. A store that fails degrades recall, never the turn.

    When the host started recall for this very message ahead of the graph
    (``Context.recall_ahead``), its result is used; otherwise recall runs here. Only the
    prompt reads ``recalling`` on the reply path; ``record_recall`` keeps it in the thread
    state after the reply, so the reply's checkpoint stays as small as before.
    """
    ctx = runtime.context or Context()
    text = last_human_text(state.get("messages", []))
    if not text:
        return {"recalling": []}
    ahead = ctx.recall_ahead
    if isinstance(ahead, RecallAhead) and ahead.text == text and not ahead.result.cancelled():
        return {"recalling": await ahead.result}
    return {"recalling": await recall(ports_of(ctx.services), ctx, text)}
