"""PostgreSQL goes away under a running server: clear 503s, then recovery when it returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from mnemograph.services import open_services
from server import create_app
from stores.postgres.embedded import start_embedded_postgres
from stores.settings import Settings


async def test_routes_answer_503_and_recover(tmp_path: Path) -> None:
    pg_dir = tmp_path / "pg"
    embedded = start_embedded_postgres(pg_dir, keep_running=False)
    settings = Settings(
        data_dir=tmp_path,
        database_url=embedded.url,
        model="fake",  # type: ignore[arg-type]
    )
    async with open_services(settings, with_graph=False, with_memory=False) as services:
        assert services.users is not None
        _, key = await services.users.create("pg-down")
        app = create_app(services)
        headers = {"Authorization": f"Bearer {key}"}
        body = {"input": {"messages": [{"type": "human", "content": "hello"}]},
                "config": {"configurable": {"thread_id": "t-down"}}}  # fmt: skip
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
                assert (
                    await c.post("/agent/invoke", json=body, headers=headers)
                ).status_code == 200

                embedded.server.cleanup()  # PostgreSQL stops
                for method, path in [("GET", "/threads"), ("GET", "/threads/t-down"),
                                     ("POST", "/agent/invoke"), ("GET", "/health")]:  # fmt: skip
                    res = await c.request(method, path, headers=headers,
                                          json=body if method == "POST" else None)  # fmt: skip
                    assert res.status_code == 503, (path, res.status_code, res.text)
                    assert "PostgreSQL" in res.text or "postgres" in res.text, res.text
                ready = await c.get("/readyz")
                assert ready.status_code == 503 and "PostgreSQL" in ready.json()["detail"]
                assert (await c.get("/livez")).status_code == 200  # the process itself is fine

                restarted = start_embedded_postgres(pg_dir, keep_running=False)
                # The pool reconnects in the background; give it a moment, bounded.
                for _ in range(60):
                    if (await c.get("/health")).status_code == 200:
                        break
                    await asyncio.sleep(0.5)
                assert (await c.get("/health")).status_code == 200
                res = await c.get("/api/threads/t-down", headers=headers)
                assert res.status_code == 200, res.text
                assert [m["content"] for m in res.json()["messages"]] == [
                    "hello", "echo: hello",
                ]  # fmt: skip
                res = await c.post("/agent/invoke", json=body, headers=headers)
                assert res.status_code == 200, res.text
                await app.state.runner.drain()
        await app.state.runner.drain()
    restarted.server.cleanup()
