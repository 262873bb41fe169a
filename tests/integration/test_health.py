"""Probes and health for operators (issue 16 item 12): a graph server outage degrades the
service (turns go on, graph writes wait in the outbox) but does not fail it; only a
PostgreSQL outage does. ``/livez`` never looks past the process; ``/readyz`` needs Postgres."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from mnemograph.services import open_services
from server import create_app
from stores.knowledge.arcadedb import start_arcadedb
from stores.settings import Settings


async def test_graph_outage_is_degraded_not_down(tmp_path: Path, pg_url: str) -> None:
    server = start_arcadedb(tmp_path / "arcadedb", join=False)
    settings = Settings(
        data_dir=tmp_path, database_url=pg_url, model="fake", neo4j_uri=server.uri,
        neo4j_user=server.user, neo4j_password=server.password, neo4j_database=server.database,
    )  # type: ignore[arg-type]  # fmt: skip
    try:
        async with open_services(settings) as services:
            _, key = await services.user_registry().create(f"health-{uuid.uuid4().hex[:6]}")
            app = create_app(services)
            headers = {"Authorization": f"Bearer {key}"}
            tid = f"h-{uuid.uuid4().hex[:6]}"
            body = {"input": {"messages": [{"type": "human", "content": "I live in Lisbon"}]},
                    "config": {"configurable": {"thread_id": tid}}}  # fmt: skip
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                             timeout=60) as c:  # fmt: skip
                    healthy = await c.get("/health")
                    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
                    # The server-wide outbox depth (the session's database is shared).
                    assert services.outbox is not None
                    assert healthy.json()["graph_outbox"] == await services.outbox.count()

                    server.kill()
                    res = await c.get("/health")
                    assert res.status_code == 200, res.text
                    assert res.json()["status"] == "degraded"
                    assert res.json()["services"]["postgres"] == "ok"
                    assert res.json()["services"]["graph"].startswith("unavailable")
                    assert (await c.get("/readyz")).json() == {"status": "ready"}
                    assert (await c.get("/livez")).json() == {"status": "ok"}
                    # Turns still work while the graph is away.
                    turn = await c.post("/agent/invoke", json=body, headers=headers)
                    assert turn.status_code == 200, turn.text
                    await app.state.runner.drain()
    finally:
        server.stop()
