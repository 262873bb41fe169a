"""The HTTP middleware: body limits before any route runs, and per-route latency after.

Latency samples live in a :class:`Latency` on ``app.state.latency``, one per app.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse

MAX_BODY_BYTES = 256 * 1024


class Latency:
    """Per-node latency samples since start, bounded so memory stays flat."""

    def __init__(self, keep: int = 2000) -> None:
        self.samples: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=keep))

    def add(self, name: str, ms: float) -> None:
        self.samples[name].append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, values in self.samples.items():
            ordered = sorted(values)
            if ordered:
                out[name] = {"n": len(ordered)} | {
                    f"p{int(q * 100)}": ordered[min(len(ordered) - 1, int(q * len(ordered)))]
                    for q in (0.5, 0.95, 0.99)
                }
        return out


async def limits_and_timing(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """413 over ``MAX_BODY_BYTES``, 400 for a body that is not UTF-8; then time the route."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        return JSONResponse(
            {"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413
        )
    if request.method in ("POST", "PUT", "PATCH"):
        try:  # one clear 400 here, instead of a decode error deep in a route
            (await request.body()).decode("utf-8")
        except UnicodeDecodeError as exc:
            return JSONResponse(
                {"detail": f"request body is not valid UTF-8 (byte {exc.start})"},
                status_code=400,
            )
    t0 = time.perf_counter()
    response = await call_next(request)
    latency: Latency = request.app.state.latency
    latency.add(f"http {request.method} {request.url.path.split('/')[1] or '/'}",
                (time.perf_counter() - t0) * 1000)  # fmt: skip
    return response
