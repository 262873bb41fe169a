"""The DATABASE_URL path, against the machine's PostgreSQL 15 (which has no pgvector)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from graph.builder import build_graph
from graph.context import Context
from mnemograph.services import open_services
from stores.settings import Settings
from tests.fakes import recording_model


async def test_checkpoints_on_plain_postgres(
    system_pg_url: str, data_dir: Path, uid: str, tid: str
) -> None:
    settings = Settings(data_dir=data_dir / "sys", database_url=system_pg_url, model="fake")  # type: ignore[arg-type]
    config: Any = {"configurable": {"thread_id": tid}}
    async with open_services(settings) as services:
        assert services.embedded_pg_start_s is None  # nothing embedded was started
        assert services.pgvector is False
        assert services.store is not None and services.store.index_config is None
        services.set_chat_model(recording_model())
        assert services.threads is not None
        await services.threads.claim(uid, tid)
        graph = build_graph(services.checkpointer, services.store)
        ctx = Context(user_id=uid, strategy="summary", services=services)
        for text in ("one", "two", "three"):
            await graph.ainvoke({"messages": [HumanMessage(content=text)]}, config, context=ctx)
    # A new pool and saver (as after a restart) reads the same thread back.
    async with open_services(settings, with_embeddings=False) as again:
        graph = build_graph(again.checkpointer, again.store)
        state = await graph.aget_state(config)
        assert state.values["turn"] == 3
        assert state.values["summary"]
        assert [m.text for m in state.values["messages"]][-2] == "three"
        assert again.threads is not None
        assert (await again.threads.get(tid, uid)).user_id == uid
