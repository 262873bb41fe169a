"""A deterministic, zero-latency chat model for tests, benchmarks and offline demos.

It lets the whole turn (checkpoints, summaries, memory writes) run without any LLM, so what
benchmarks measure is Mnemograph's own cost. Select it with ``MNEMOGRAPH_MODEL=fake``.

It has no test hooks and reads no environment: tests that need scripted replies, structured
answers, delays or hangs use its subclass ``tests.fakes.ScriptedChatModel`` (the fault tests
swap it in from their own entry point, ``tests/hang.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class EchoChatModel(BaseChatModel):
    """Replies ``echo: <last human message>``; every reply is a fresh message with its own id."""

    max_echo_chars: int = 300

    @property
    def _llm_type(self) -> str:
        return "mnemograph-echo"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = kwargs.get("tools") or []
        if tools:
            return ChatResult(generations=[ChatGeneration(message=self._empty_call(tools[0]))])
        last = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        text = last.text if last is not None else ""
        reply = AIMessage(
            content="echo: " + " ".join(text.split())[: self.max_echo_chars],
            id=f"echo-{uuid.uuid4().hex}",
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])

    @staticmethod
    def _empty_call(tool: dict[str, Any]) -> AIMessage:
        """Call the tool with every required list empty: a valid "nothing found" answer, so
        structured-output paths (memory extraction) run end to end at zero latency."""
        function = tool.get("function", tool)
        params = function.get("parameters", {})
        props = params.get("properties", {})
        required = params.get("required", [])
        args: dict[str, Any] = {
            name: [] for name in required if props.get(name, {}).get("type") == "array"
        }
        return AIMessage(
            content="",
            id=f"echo-{uuid.uuid4().hex}",
            tool_calls=[{"name": function.get("name", "tool"), "args": args, "id": "call-0"}],
        )

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)
