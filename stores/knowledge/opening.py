"""Open the knowledge graph of a process: the Bolt graph store, its outbox and the replayer.

A graph server that cannot be reached at start-up is not fatal: chat works, triple writes
queue in the outbox, and a background task replays them once the server answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from typing import Any

from langchain_core.embeddings import Embeddings
from psycopg_pool import AsyncConnectionPool

from stores.errors import ServiceUnavailable
from stores.knowledge.arcadedb import start_arcadedb
from stores.knowledge.bolt import GraphStore
from stores.knowledge.facts import KnowledgeGraph
from stores.knowledge.outbox import GraphOutbox, replay_forever
from stores.settings import Settings

log = logging.getLogger(__name__)

REPLAY_INTERVAL_S = 15.0


async def open_graph_store(settings: Settings, stack: AsyncExitStack) -> GraphStore:
    """``NEO4J_URI`` if set, else the embedded ArcadeDB in the data dir (stopped on exit)."""
    if settings.neo4j_uri:
        password = settings.neo4j_password.get_secret_value() if settings.neo4j_password else None
        graph = await GraphStore.open(
            settings.neo4j_uri, settings.neo4j_user, password, settings.neo4j_database
        )
    else:
        server = await asyncio.to_thread(start_arcadedb, settings.graph_data_dir)
        stack.callback(server.stop)
        graph = await GraphStore.open(server.uri, server.user, server.password, server.database)
    stack.push_async_callback(graph.close)
    return graph


async def open_knowledge(
    settings: Settings,
    pool: AsyncConnectionPool[Any] | None,
    embeddings: Embeddings | None,
    stack: AsyncExitStack,
) -> KnowledgeGraph | None:
    """The knowledge graph of this process, its replayer started; ``None`` when disabled.

    The outbox's table is made with the rest of the schema; the graph server is optional at
    start-up (writes queue until it answers).
    """
    outbox = GraphOutbox(pool) if pool is not None else None
    try:
        graph = await open_graph_store(settings, stack)
    except ServiceUnavailable as exc:
        log.warning("knowledge graph disabled: %s", exc)
        return KnowledgeGraph(None, outbox, embeddings) if outbox is not None else None
    try:
        await graph.setup()
    except ServiceUnavailable as exc:
        log.warning("graph server not reachable yet (%s); writes go to the outbox", exc.detail)
    knowledge = KnowledgeGraph(graph, outbox, embeddings)
    stack.push_async_callback(knowledge.aclose)
    if outbox is not None:
        task = asyncio.create_task(
            replay_forever(graph, outbox, interval_s=REPLAY_INTERVAL_S),
            name="mnemograph-outbox-replay",
        )

        async def stop_replay() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        stack.push_async_callback(stop_replay)
    return knowledge
