"""Under ``langgraph dev`` langgraph-api runs the custom app's middleware in front of its own
routes too: the gate must authenticate Mnemograph's routes only and leave langgraph-api's to
its own auth (Studio's dev user), while still counting every body."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mnemograph.studio_app import make_app


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def test_the_gate_leaves_langgraph_apis_routes_to_langgraph_api() -> None:
    app = make_app()
    # what langgraph-api does with the custom app: its own routes join the app's
    app.router.routes = [*app.router.routes, Route("/ok", _ok),
                         Route("/threads", _ok, methods=["POST"])]  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/ok")).status_code == 200
        assert (await http.post("/threads", json={})).status_code == 200  # the dev user's
        assert (await http.post("/threads", content=b"x" * 300_000)).status_code == 413
        assert (await http.get("/api/threads")).status_code == 401
        assert (await http.post("/agent/invoke", content=b"{not json")).status_code == 401
