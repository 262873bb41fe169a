"""Deterministic stand-ins for the LLM and embeddings in knowledge-graph tests."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

Script = Callable[[str], list[dict[str, Any]]]
_ids = itertools.count()


def user_block(messages: Sequence[BaseMessage]) -> str:
    """The text inside <user>…</user> of the extraction prompt."""
    found = re.search(r"<user>\n(.*?)\n</user>", str(messages[-1].content), re.S)
    return found.group(1) if found else ""


class ScriptedToolModel(BaseChatModel):
    """Answers tool-bound calls with an ``ExtractedTriples`` tool call from ``script``, and
    plain calls with a text reply. Every reply is a fresh message with its own id; every
    prompt is recorded."""

    script: Script
    fail_extraction: bool = False
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-model"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=list(tools), **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.prompts.append(list(messages))
        n = next(_ids)
        if "tools" in kwargs:
            if self.fail_extraction:
                raise RuntimeError("model crashed")
            triples = self.script(user_block(messages))
            reply = AIMessage(
                content="",
                id=f"tool-{n}",
                tool_calls=[
                    {"name": "ExtractedTriples", "args": {"triples": triples}, "id": f"call-{n}"}
                ],
            )
        else:
            reply = AIMessage(content=f"noted ({n})", id=f"reply-{n}")
        return ChatResult(generations=[ChatGeneration(message=reply)])


def rule_script(text: str) -> list[dict[str, Any]]:
    """A tiny rule-based 'LLM': enough English for the tests' sentences."""
    triples: list[dict[str, Any]] = []
    rules = [
        (r"\bI live in ([A-Z]\w+)", "live in"),
        (r"\bI moved to ([A-Z]\w+)", "moved to"),
        (r"\bI work (?:at|for) ([A-Z]\w+)", "works for"),
        (r"\bI like (\w+)", "likes"),
    ]
    for pattern, predicate in rules:
        for match in re.finditer(pattern, text):
            triples.append(
                {
                    "subject": "I",
                    "predicate": predicate,
                    "object": match.group(1),
                    "confidence": 0.9,
                }
            )
    for match in re.finditer(r"\b([A-Z]\w+) is (?:based|located) in ([A-Z]\w+)", text):
        triples.append(
            {
                "subject": match.group(1),
                "predicate": "located in",
                "object": match.group(2),
                "confidence": 0.9,
            }
        )
    return triples


class KeywordEmbeddings(Embeddings):
    """Two-dimensional embeddings: texts about work/companies vs everything else."""

    WORK = frozenset({"acme", "company", "employer", "job", "office"})

    def _vec(self, text: str) -> list[float]:
        words = set(re.findall(r"\w+", text.casefold()))
        return [1.0, 0.0] if words & self.WORK else [0.0, 1.0]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)
