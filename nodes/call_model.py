"""The reply. Everything the model sees is assembled here from state and recalled memory."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from langgraph.runtime import Runtime

from graph.context import Context
from graph.ports import ports_of
from graph.render import system_message
from graph.short_term import prompt_messages
from graph.state import AgentState


async def call_model(state: AgentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Answer the newest message under the request's short-term strategy."""
    ctx = runtime.context or Context()
    ports = ports_of(ctx.services)
    model: BaseChatModel | Runnable[Any, Any] = ports.chat_model()
    if ctx.model and isinstance(model, ChatOpenAI):
        model = model.bind(model=ctx.model)
    history = prompt_messages(state.get("messages", []), ctx)
    prompt = [system_message(state.get("summary", ""), state.get("recalling", [])), *history]
    reply = await model.ainvoke(prompt)
    return {"messages": [reply], "turn": state.get("turn", 0) + 1}
