"""Deterministic chat models for tests: scripted replies, every one a fresh message."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field


def numbered_replies(prefix: str = "reply") -> Iterator[AIMessage]:
    """An endless script of distinct replies (fresh objects, fresh ids)."""
    for i in itertools.count():
        yield AIMessage(content=f"{prefix} {i}", id=f"{prefix}-{i}")


class RecordingChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that also keeps every prompt it was given."""

    calls: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def recording_model(prefix: str = "reply") -> RecordingChatModel:
    return RecordingChatModel(messages=numbered_replies(prefix))
