"""The bare LangGraph agent served the way LangGraph's docs suggest: the HTTP baseline of
``bench.vs_langgraph --http`` (issue 18).

A minimal FastAPI app: a lifespan that opens a psycopg pool and the stock
``AsyncPostgresSaver``, one ``StateGraph(MessagesState)`` with one model node (the same
zero-latency echo model the Mnemograph server runs in benches), and one route that takes the
request shape of Mnemograph's ``/agent/invoke`` so the same client drives both. No auth, no
memory, no limits: everything Mnemograph adds is what the comparison measures.

Run: ``DATABASE_URL=… uvicorn bench.bare_app:app --port 8001``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from bench.vs_langgraph import bare_graph, stock_pool
from stores.models.fake_llm import EchoChatModel


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the pool and the saver once per process, as the docs' server examples do."""
    pool = await stock_pool(os.environ["DATABASE_URL"])
    saver = AsyncPostgresSaver(conn=pool)
    await saver.setup()
    app.state.graph = bare_graph(EchoChatModel(), saver)
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/agent/invoke")
async def invoke(request: Request) -> dict[str, Any]:
    """One turn on the body's thread; the reply's text back."""
    body = await request.json()
    thread = body["config"]["configurable"]["thread_id"]
    text = body["input"]["messages"][-1]["content"]
    out = await request.app.state.graph.ainvoke(
        {"messages": [HumanMessage(content=text)]},
        {"configurable": {"thread_id": thread}},
    )
    return {"output": {"messages": [{"type": "ai", "content": out["messages"][-1].text}]}}
