"""Liveness of every backing service, and this user's counts with latency percentiles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mnemograph.web.deps import ServicesDep, User
from mnemograph.web.middleware import Latency

router = APIRouter()


@router.get("/health", summary="Check every backing service; 503 names the failing one")
async def health(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        assert services.pool is not None
        async with services.pool.connection(timeout=5) as conn:
            await conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    graph = services.graph
    if graph is not None:
        try:
            await graph.ping()
            checks["graph"] = "ok"
        except Exception as exc:
            checks["graph"] = f"unavailable: {type(exc).__name__}"
    failing = [name for name, state in checks.items() if state != "ok"]
    body = {"status": "ok" if not failing else "unavailable", "services": checks}
    if failing:
        body["detail"] = f"{', '.join(failing)} unavailable"
    return JSONResponse(body, status_code=503 if failing else 200)


@router.get("/stats", summary="Counts and per-route latency percentiles since start")
async def stats(request: Request, user: User, services: ServicesDep) -> dict[str, Any]:
    assert services.threads is not None
    threads = await services.threads.list(user, limit=10_000)
    latency: Latency = request.app.state.latency
    return {"user": {"threads": len(threads)}, "latency_ms": latency.summary()}
