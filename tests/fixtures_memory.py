"""Long-term memory fixtures: a MemoryStore on the embedded Postgres (pgvector) and one on the
system PostgreSQL 15 (no pgvector, full-text fallback), plus a scripted structured-output model.

Loaded by ``tests/conftest.py`` through ``pytest_plugins``; uses its ``pg_url`` and
``system_pg_url``. The PG15 store lives in its own throw-away schema, so reruns and other
tests' tables on that server never collide. Nothing here skips.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from stores.memory_store import MemoryStore
from stores.postgres import open_pool


@pytest.fixture(scope="session")
def minilm() -> Embeddings:
    """The default local embedder (packaged MiniLM, int8 ONNX), loaded once."""
    from stores.minilm_onnx import OnnxMiniLM
    from stores.settings import Settings

    return OnnxMiniLM(Settings().model_cache_dir, threads=1)


@pytest.fixture(scope="session")
async def memory_store(pg_url: str, minilm: Embeddings) -> AsyncIterator[MemoryStore]:
    pool = await open_pool(pg_url, max_size=4)
    store = MemoryStore(pool, minilm)
    await store.setup()
    yield store
    await pool.close()


@pytest.fixture(scope="session")
def fts_schema(system_pg_url: str) -> Iterator[str]:
    """A fresh schema on the system PG15, dropped at the end of the session."""
    schema = f"mnemo_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(system_pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield schema
    with psycopg.connect(system_pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="session")
async def fts_memory_store(
    system_pg_url: str, fts_schema: str, minilm: Embeddings
) -> AsyncIterator[MemoryStore]:
    """MemoryStore on PG15 without pgvector: embeddings are configured but cannot be used."""
    sep = "&" if "?" in system_pg_url else "?"
    pool = await open_pool(f"{system_pg_url}{sep}options=-csearch_path%3D{fts_schema}")
    store = MemoryStore(pool, minilm)
    await store.setup()
    yield store
    await pool.close()


class ToolCallingFake(BaseChatModel):
    """Answers every call with one scripted tool call, as an OpenAI-style model would for
    ``with_structured_output(..., method="function_calling")``. Each reply is a fresh
    message with its own id; an exhausted script or an ``Exception`` entry raises."""

    tool_name: str = "ExtractedMemories"
    script: list[Any] = Field(default_factory=list)
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        if not self.script:
            raise RuntimeError("fake model script exhausted")
        args = self.script.pop(0)
        if isinstance(args, Exception):
            raise args
        n = len(self.calls)
        reply = AIMessage(
            content="",
            id=f"fake-{uuid.uuid4().hex}",
            tool_calls=[{"name": self.tool_name, "args": args, "id": f"call_{n}"}],
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(**kwargs)
