"""Errors in OpenAI's shape on the ``/v1`` routes.

OpenAI clients parse ``{"error": {"message", "type", "code"}}`` into their exceptions; the
rest of the app answers ``{"detail": ...}``. A route class (FastAPI's own extension point)
wraps dependency resolution, validation and the route itself, and reshapes whatever the
app's exception handlers would have answered, so status codes stay the same on every door.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from mnemograph.web.routes.openai_compat.wire import error

log = logging.getLogger(__name__)

_CODES = {401: "invalid_api_key", 413: "request_too_large", 429: "rate_limit_exceeded"}


class OpenAIError(Exception):
    """A failure this door names itself, with OpenAI's ``code``."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _validation_message(exc: RequestValidationError) -> str:
    """The first few problems, by field; the input itself is never echoed back."""
    parts = []
    for problem in exc.errors()[:3]:
        where = ".".join(str(p) for p in problem.get("loc", ())[1:]) or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _as_openai(request: Request, exc: Exception) -> Response:
    """The OpenAI-shaped answer to ``exc``, with the status the rest of the app would give."""
    if isinstance(exc, OpenAIError):
        return JSONResponse(error(exc.status, exc.message, exc.code), status_code=exc.status)
    if isinstance(exc, RequestValidationError):
        return JSONResponse(error(400, _validation_message(exc)), status_code=400)
    if isinstance(exc, HTTPException):
        body = error(exc.status_code, str(exc.detail), _CODES.get(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
    handlers = request.app.exception_handlers
    handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
    if handler is None or isinstance(handler, type):
        log.exception("OpenAI-compatible request failed", exc_info=exc)
        return JSONResponse(error(500, "the server failed; see its log"), status_code=500)
    answered: Response = await handler(request, exc)
    detail = json.loads(bytes(answered.body)).get("detail", "request failed")
    # OpenAI answers a request it cannot act on with 400 where the REST doors say 422.
    status = 400 if answered.status_code == 422 else answered.status_code
    reshaped = JSONResponse(error(status, str(detail)), status_code=status)
    for name in ("retry-after",):
        if name in answered.headers:
            reshaped.headers[name] = answered.headers[name]
    return reshaped


class OpenAIRoute(APIRoute):
    """An ``APIRoute`` whose failures come back in OpenAI's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return await _as_openai(request, exc)

        return route
