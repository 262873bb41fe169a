"""``GET /metrics``: the server's figures in Prometheus' text format (:mod:`mnemograph.metrics`).

Open to scrapers without a key, like ``/health``: every series is server-wide, with no user
id or thread id in any label. Limited per client address like the other open routes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from mnemograph.metrics import CONTENT_TYPE_LATEST, Metrics

router = APIRouter()


@router.get(
    "/metrics",
    summary="Server-wide figures in Prometheus' text format (no key needed)",
    response_class=Response,
)
async def metrics(request: Request) -> Response:
    series: Metrics = request.app.state.metrics
    await series.refresh()
    return Response(series.exposition(), media_type=CONTENT_TYPE_LATEST)
