"""After the reply: keep what this turn recalled in the thread state, for Studio and
``get_state``.

``load_memory`` hands its recall to the prompt through an untracked channel, so the reply's
checkpoint, which the caller waits for, does not grow. This node copies it into the tracked
``recalled`` field in the post-reply step, whose checkpoint nobody waits for.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import AgentState


async def record_recall(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """``recalled`` = this turn's ``recalling`` (empty when a resumed run lost it)."""
    return {"recalled": list(state.get("recalling", []))}
