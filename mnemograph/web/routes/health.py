"""Health for people and probes (``/health``, ``/livez``, ``/readyz``), and the caller's own
counts (``/stats``; server-wide figures are on ``/metrics``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from mnemograph.services import Services
from mnemograph.web.deps import ServicesDep, User
from stores.errors import ServiceUnavailable

router = APIRouter()


async def _postgres(services: Services) -> str:
    try:
        async with services.postgres().connection(timeout=5) as conn:
            await conn.execute("SELECT 1")
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"


@router.get("/livez", summary="The process answers (no dependency is checked)")
async def livez() -> dict[str, str]:
    """For a liveness probe: restarting the process would not fix a database outage, so
    this never looks past the process itself."""
    return {"status": "ok"}


@router.get("/readyz", summary="Ready for turns: PostgreSQL answers; 503 otherwise")
async def readyz(services: ServicesDep) -> JSONResponse:
    """For a readiness probe: turns need PostgreSQL; the graph server is not required,
    because graph writes wait in the outbox while it is away."""
    state = await _postgres(services)
    if state != "ok":
        return JSONResponse({"status": "not ready", "detail": f"PostgreSQL {state}"}, 503)
    return JSONResponse({"status": "ready"})


@router.get("/health", summary="Every backing service: ok, degraded (graph down) or 503")
async def health(services: ServicesDep) -> JSONResponse:
    """``ok``; ``degraded`` (200) when only the graph server is down, since turns go on
    and graph writes wait in the outbox; ``unavailable`` (503) when PostgreSQL is."""
    checks: dict[str, Any] = {"postgres": await _postgres(services)}
    graph = services.graph
    if graph is not None:
        try:
            await graph.ping()
            checks["graph"] = "ok"
        except Exception as exc:
            checks["graph"] = f"unavailable: {type(exc).__name__}"
    body: dict[str, Any] = {"services": checks}
    outbox = services.outbox
    if outbox is not None and checks["postgres"] == "ok":
        body["graph_outbox"] = await outbox.count()
    failing = [name for name, state in checks.items() if state != "ok"]
    if checks["postgres"] != "ok":
        body |= {"status": "unavailable", "detail": f"{', '.join(failing)} unavailable"}
        return JSONResponse(body, status_code=503)
    if failing:
        body |= {"status": "degraded",
                 "detail": "graph server unavailable; graph writes wait in the outbox"}  # fmt: skip
        return JSONResponse(body)
    return JSONResponse({"status": "ok", **body})


@router.get("/stats", summary="The caller's own counts (server-wide figures: /metrics)")
async def stats(user: User, services: ServicesDep) -> dict[str, Any]:
    """The caller's threads, memories, current graph facts and graph writes waiting in the
    outbox; nothing about any other user. A count whose store is not configured (or, for
    the graph, not answering) is ``null``."""
    assert services.threads is not None
    threads = await services.threads.list(user, limit=10_000)
    figures: dict[str, Any] = {"threads": len(threads), "memories": None, "facts": None,
                               "graph_outbox": None}  # fmt: skip
    if services.memory is not None:
        figures["memories"] = await services.memory.count(user)
    if services.graph is not None:
        try:
            figures["facts"] = await services.graph.count_facts(user)
        except ServiceUnavailable:
            pass  # graph server down: its writes wait in the outbox, counted below
    if services.outbox is not None:
        figures["graph_outbox"] = await services.outbox.count(user)
    return {"user": figures}
