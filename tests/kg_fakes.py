"""Deterministic stand-ins for the LLM and embeddings in knowledge-graph tests."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage

from tests.fakes import ScriptedChatModel

Script = Callable[[str], list[dict[str, Any]]]


def user_block(messages: Sequence[BaseMessage]) -> str:
    """The text inside <user>…</user> of the extraction prompt."""
    found = re.search(r"<user>\n(.*?)\n</user>", str(messages[-1].content), re.S)
    return found.group(1) if found else ""


def triple_model(script: Script, *, fail: bool = False) -> ScriptedChatModel:
    """The scripted model answering knowledge extraction (``ExtractedTriples``) with
    ``script(<user> block of the prompt)``; with ``fail`` that call raises instead. Chat
    calls echo; every prompt is recorded in ``calls``."""
    answer: Any = (
        RuntimeError("model crashed")
        if fail
        else (lambda messages: {"triples": script(user_block(messages))})
    )
    return ScriptedChatModel(tool_replies={"ExtractedTriples": answer})


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
