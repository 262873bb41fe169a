"""A deterministic, zero-latency chat model for tests, benchmarks and offline demos.

It lets the whole turn (checkpoints, summaries, memory writes) run without any LLM, so what
benchmarks measure is Mnemograph's own cost. Select it with ``MNEMOGRAPH_MODEL=fake``.
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
        last = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        text = last.text if last is not None else ""
        reply = AIMessage(
            content="echo: " + " ".join(text.split())[: self.max_echo_chars],
            id=f"echo-{uuid.uuid4().hex}",
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        """Accept tools but never call them, so structured-output callers get a clean failure
        they already handle instead of a NotImplementedError at bind time."""
        return self.bind(**kwargs)
