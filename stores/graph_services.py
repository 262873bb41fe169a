"""Open the knowledge-graph side of ``Services``: the Bolt graph store and its outbox.

Kept out of ``stores/services.py`` so that module stays a list of what a process opens.
A graph server that cannot be reached at start-up is not fatal: chat works, triple writes
queue in the outbox, and a background task replays them once the server answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from stores.arcadedb import start_arcadedb
from stores.errors import ServiceUnavailable
from stores.graph_store import GraphStore
from stores.outbox import GraphOutbox, replay_forever
from stores.settings import Settings

if TYPE_CHECKING:
    from stores.services import Services

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


async def attach_graph(services: Services, stack: AsyncExitStack) -> None:
    """Set ``services.outbox`` and ``services.graph``; start the outbox replayer."""
    settings: Settings = services.settings
    if services.pool is not None:  # its table is made with the rest of the schema
        services.outbox = GraphOutbox(services.pool)
    try:
        graph = await open_graph_store(settings, stack)
    except ServiceUnavailable as exc:
        log.warning("knowledge graph disabled: %s", exc)
        return
    try:
        await graph.setup()
    except ServiceUnavailable as exc:
        log.warning("graph server not reachable yet (%s); writes go to the outbox", exc.detail)
    services.graph = graph
    if services.outbox is not None:
        task = asyncio.create_task(
            replay_forever(graph, services.outbox, interval_s=REPLAY_INTERVAL_S),
            name="mnemograph-outbox-replay",
        )

        async def stop_replay() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        stack.push_async_callback(stop_replay)
