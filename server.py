"""HTTP entry point. Thin on purpose: routes translate HTTP to the same services the CLI uses.

Run with ``uvicorn server:app`` (``mnemograph serve`` arrives with the serving work).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from stores.services import Services, open_services


def create_app(services: Services | None = None) -> FastAPI:
    """Build the app; tests pass already-open services, production opens its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        async with open_services() as opened:
            app.state.services = opened
            yield

    app = FastAPI(title="Mnemograph", version="0.1.0", lifespan=lifespan)

    @app.get("/health", summary="Check every backing service")
    async def health() -> JSONResponse:
        svc: Services = app.state.services
        checks: dict[str, Any] = {}
        try:
            assert svc.pool is not None
            async with svc.pool.connection() as conn:
                await conn.execute("SELECT 1")
            checks["postgres"] = "ok"
        except Exception as exc:
            checks["postgres"] = f"unavailable: {type(exc).__name__}"
        failing = [name for name, state in checks.items() if state != "ok"]
        return JSONResponse(
            {"status": "ok" if not failing else "degraded", "services": checks},
            status_code=503 if failing else 200,
        )

    return app


def __getattr__(name: str) -> Any:
    """``server:app`` for uvicorn, built on first access rather than at import time."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
