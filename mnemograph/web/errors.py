"""Exception handlers: every failure a caller can act on becomes a status and one clear
``detail`` line naming the service at fault, never a bare 500."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import openai
import psycopg
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from stores.errors import (
    Conflict,
    Gone,
    InvalidInput,
    MnemographError,
    NotFound,
    ServiceUnavailable,
)
from stores.postgres.migrations import GONE_SQLSTATE

log = logging.getLogger(__name__)

__all__ = ["EXCEPTION_HANDLERS", "Conflict"]


async def known_errors(request: Request, exc: Exception) -> JSONResponse:
    status = 400
    if isinstance(exc, Conflict):
        status = 409
    elif isinstance(exc, Gone):
        status = 410
    elif isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, ServiceUnavailable):
        status = 503
    elif isinstance(exc, InvalidInput):
        status = 422
    return JSONResponse({"detail": str(exc)}, status_code=status)


_MAX_SHOWN = 64
"""Longest message or context value of a validation error that is shown."""
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def _shown(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value if isinstance(value, str | int) else str(value)[:limit]


def _where(part: Any) -> Any:
    """A location step as shown: a list index, or a field name; a key the caller sent that
    does not look like one (it may be any text of theirs) is not repeated."""
    if isinstance(part, int) or (isinstance(part, str) and _FIELD.fullmatch(part)):
        return part
    return "(key)"


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each problem (where, what, the rule's limits) without the input itself:
    FastAPI's own answer echoes every offending value, up to the whole body."""
    assert isinstance(exc, RequestValidationError)
    problems: list[Any] = []
    for error in exc.errors():
        if not isinstance(error, dict):  # LangServe raises it with plain strings
            problems.append(_shown(str(error), _MAX_SHOWN))
            continue
        problem: dict[str, Any] = {
            "type": error.get("type", "invalid"),
            "loc": [_where(part) for part in error.get("loc", ())],
            "msg": _shown(str(error.get("msg", "")), 4 * _MAX_SHOWN),
        }
        ctx = error.get("ctx")
        if isinstance(ctx, dict):
            problem["ctx"] = {str(k): _shown(v, _MAX_SHOWN) for k, v in ctx.items()}
        problems.append(problem)
    return JSONResponse({"detail": problems}, status_code=422)


async def postgres_error(request: Request, exc: Exception) -> JSONResponse:
    """A write refused because its user was deleted meanwhile is a 410; any other database
    error is logged and answered without its text."""
    if getattr(exc, "sqlstate", None) == GONE_SQLSTATE:
        return JSONResponse({"detail": "this account was deleted"}, status_code=410)
    log.error("database error", exc_info=exc)
    return JSONResponse({"detail": "the database refused the request; see the server log"},
                        status_code=500)  # fmt: skip


async def postgres_down(request: Request, exc: Exception) -> JSONResponse:
    """A lost or unreachable database is a 503 naming the service, never a bare 500."""
    return JSONResponse(
        {"detail": "PostgreSQL is unavailable; retry shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def llm_timeout(request: Request, exc: Exception) -> JSONResponse:
    timeout = request.app.state.services.settings.llm_timeout_s
    return JSONResponse(
        {"detail": f"the LLM endpoint did not answer within {timeout:g} s; nothing was "
         "saved, retry the message"},
        status_code=504,
    )  # fmt: skip


async def llm_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "the LLM endpoint is unreachable; nothing was saved, retry the message"},
        status_code=503,
    )


async def llm_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status_code", 0)
    return JSONResponse(
        {"detail": f"the LLM endpoint answered HTTP {status}; nothing was saved"},
        status_code=502,
    )


Handler = Callable[[Request, Any], Coroutine[Any, Any, JSONResponse]]

EXCEPTION_HANDLERS: Mapping[type[Exception], Handler] = {
    MnemographError: known_errors,
    RequestValidationError: invalid_request,
    psycopg.Error: postgres_error,
    psycopg.OperationalError: postgres_down,
    PoolTimeout: postgres_down,
    # Starlette picks the handler of the nearest class in the exception's MRO, so the
    # timeout (a connection error to openai) gets its own 504 before the generic 503.
    openai.APITimeoutError: llm_timeout,
    openai.APIConnectionError: llm_down,
    openai.APIStatusError: llm_error,
}
"""Installed by ``create_app`` with ``app.add_exception_handler``; read-only."""
