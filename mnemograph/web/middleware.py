"""The HTTP gate, one pure ASGI middleware in front of every route and mounted app: who is
calling is decided from the headers before any byte of the body is read, the body is then
counted as it arrives (``Content-Length`` or chunked) and cut at :data:`MAX_BODY_BYTES` (or a
route's own cap, :func:`body_limit`), and request latency goes to the app's metrics
(``app.state.metrics``).

Order, for every request:

1. a declared ``Content-Length`` over the limit is a 413 at once;
2. unless the route is open (:func:`is_open`: health, metrics, the API docs, the inspector
   page and its files), the client address's budget of failed authentications is looked at
   (429 while it is spent, before the key is: :mod:`mnemograph.web.limits`), the credential
   in the headers is checked (:func:`mnemograph.web.deps.authenticate`; a 401 spends from
   that budget), then the user's rate limit: 401 or 429 without reading the body, so an
   unauthenticated 20 MB upload costs the server one header parse; an open route spends
   from the address's budget for open routes instead;
3. the body is read with a running count (413 as soon as it passes the limit), must be
   UTF-8 (400), and JSON in it may nest at most :data:`MAX_JSON_DEPTH` levels (400: deeper
   bodies made the JSON parser recurse into a 500);
4. the route runs on the buffered body; the caller's user id is in ``scope["state"]``
   (``request.state.user_id``), where :func:`mnemograph.web.deps.current_user` finds it.

"The limit" is :data:`MAX_BODY_BYTES` everywhere except on the few paths the app gives a cap
of their own in ``app.state.body_limits`` (``POST /me/import`` takes a whole export
document, ``MNEMOGRAPH_IMPORT_MAX_BYTES``): the same order holds there, so a larger cap never
lets a body in before its key is checked.

Starlette 1.10 and FastAPI 0.165 ship a body limit (``FastAPI(max_body_size=...)``); it sits
outside every user middleware, answers a plain-text "Content Too Large" and replaces any
response once the declared length is over, so it cannot run after authentication nor keep
this API's ``{"detail": ...}`` shape. This middleware counts the same way (the bytes of each
``http.request`` message as it arrives) in the place that order needs.

Request latency is observed by :meth:`mnemograph.metrics.Metrics.timed`, per route
template, into the app's own registry.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnemograph.web.limits import AddressLimits, client_address

MAX_BODY_BYTES = 256 * 1024
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a JSON body may have."""

OPEN_PATHS = frozenset(
    {"/", "/health", "/livez", "/readyz", "/metrics", "/info", "/docs", "/docs/oauth2-redirect",
     "/redoc", "/openapi.json"}
)  # fmt: skip
"""Routes anyone may call: health and probes, ``/metrics`` (server-wide figures only, for
scrapers), the Agent Protocol's ``/info`` (what
``langgraph_sdk`` asks first), the API's own documentation, the inspector page."""
OPEN_PREFIXES = ("/inspector/",)
"""Static files of the inspector page."""

ErrorShape = Callable[[int, str], dict[str, Any]]
"""Builds an error body from (status, message) for routes that answer in another shape."""


def is_open(path: str) -> bool:
    """Whether ``path`` is served without a credential."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def body_limit(scope: Scope) -> int:
    """The byte cap of this request's body: the path's own cap in ``app.state.body_limits``
    (exact paths; set by the app from its settings), else :data:`MAX_BODY_BYTES`.

    A mapping on the app, not a module constant, so two apps in one process can differ and a
    cap comes from settings read at start-up."""
    limits: Mapping[str, int] = getattr(scope["app"].state, "body_limits", None) or {}
    return limits.get(scope["path"], MAX_BODY_BYTES)


class _TooLarge(Exception):
    pass


class _Left(Exception):
    """The client went away before its body was complete."""


MAX_NUMBER_DIGITS = 4300
"""Python refuses to parse longer integers (a ``ValueError``, not a JSON error)."""
_LONG_NUMBER = re.compile(rb"[0-9]{%d}" % (MAX_NUMBER_DIGITS + 1))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects in ``body`` nest deeper than ``limit``.

    Ordinary bodies have few brackets and cost two ``count`` calls; others are measured on
    the brackets outside strings, a running sum in numpy (no Python loop per byte).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    import numpy as np

    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return bool(steps.size) and int(np.cumsum(steps).max()) > limit


class Gate:
    """The pure ASGI middleware described in the module docstring.

    ``foreign`` names paths another app in the same process serves with its own auth (under
    ``langgraph dev``, langgraph-api runs this app's middleware in front of its Agent Protocol
    routes too): their bodies are still counted, their credentials are not checked here.
    """

    def __init__(self, app: ASGIApp, *, foreign: Callable[[str], bool] | None = None) -> None:
        self.app = app
        self.foreign = foreign

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from mnemograph.web.deps import authenticate, rate_limit

        state = scope["app"].state
        metrics = getattr(state, "metrics", None)
        if metrics is not None:
            send = metrics.timed(scope, send)
        headers = Headers(scope=scope)
        path: str = scope["path"]
        limit = body_limit(scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._error(scope, send, 413, f"request body over {limit} bytes")
            return
        limits: AddressLimits | None = getattr(state, "address_limits", None)
        if is_open(path):
            if limits is not None and (wait := limits.open.take(client_address(scope))):
                await self._limited(scope, send, "open", wait)
                return
        elif not (self.foreign is not None and self.foreign(path)):
            address = client_address(scope)
            if limits is not None and (wait := limits.failed.blocked(address)):
                await self._limited(scope, send, "address", wait)
                return
            try:
                user_id = await authenticate(state, headers)
                rate_limit(state, user_id)
            except HTTPException as exc:
                if exc.status_code == 401 and limits is not None:
                    limits.failed.spend(address)
                elif exc.status_code == 429 and metrics is not None:
                    metrics.limited("user")
                await self._error(scope, send, exc.status_code, str(exc.detail), exc.headers)
                return
            except Exception as exc:  # e.g. PostgreSQL down: the app's handlers name it (503)
                if not await self._handled(scope, receive, send, exc):
                    raise
                return
            scope.setdefault("state", {})["user_id"] = user_id
        if length not in (None, "0") or "transfer-encoding" in headers:
            try:
                body = await _read_body(receive, limit)
            except _TooLarge:
                await self._error(scope, send, 413, f"request body over {limit} bytes")
                return
            except _Left:
                return
            # Up to 20 MB on the import route: ~0.6 s of checks, run beside the event loop
            # there so other requests go on meanwhile; small bodies are checked in place.
            problem = (
                _body_problem(body)
                if len(body) <= MAX_BODY_BYTES
                else await asyncio.to_thread(_body_problem, body)
            )
            if problem is not None:
                await self._error(scope, send, 400, problem)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _limited(self, scope: Scope, send: Send, limit: str, wait: int) -> None:
        """429 for a spent per-address budget (``limit``: ``open`` or ``address``)."""
        metrics = getattr(scope["app"].state, "metrics", None)
        if metrics is not None:
            metrics.limited(limit)
        what = "requests" if limit == "open" else "failed authentications"
        message = f"too many {what} from this address; retry in {wait} s"
        await self._error(scope, send, 429, message, {"Retry-After": str(wait)})

    async def _handled(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> bool:
        """Answer ``exc`` as the app's exception handlers would (they run inside this
        middleware, so they never see what it raises); ``False`` if none applies."""
        handlers: dict[Any, Any] = getattr(scope["app"], "exception_handlers", {})
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None or isinstance(handler, type):
            return False
        answer = await handler(Request(scope, receive), exc)
        try:
            detail = str(json.loads(bytes(answer.body)).get("detail", "request failed"))
        except ValueError:
            detail = "request failed"
        kept = {k: v for k, v in answer.headers.items() if k == "retry-after"}
        await self._error(scope, send, answer.status_code, detail, kept)
        return True

    @staticmethod
    async def _error(
        scope: Scope,
        send: Send,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer ``status`` without touching the body (the connection closes after it)."""
        shapes: dict[str, ErrorShape] = getattr(scope["app"].state, "error_shapes", {})
        shape = next((f for p, f in shapes.items() if scope["path"].startswith(p)), None)
        body = json.dumps(shape(status, message) if shape else {"detail": message}).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, counted as it arrives; :class:`_TooLarge` past ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Left
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _body_problem(body: bytes) -> str | None:
    """Why ``body`` is refused before any route sees it, or ``None``."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"request body is not valid UTF-8 (byte {exc.start})"
    if json_too_deep(body):
        return f"request body nests deeper than {MAX_JSON_DEPTH} levels"
    if _LONG_NUMBER.search(body) and _LONG_NUMBER.search(_STRING.sub(b"", body)):
        return f"a number in the request body has more than {MAX_NUMBER_DIGITS} digits"
    if _SURROGATE_ESCAPE.search(body) and _lone_surrogate(body):
        return "request body holds text that is not valid Unicode (a lone surrogate escape)"
    return None


def _lone_surrogate(body: bytes) -> bool:
    """Whether the JSON in ``body`` has a string with an unpaired ``\\ud800``-``\\udfff``
    escape: it parses, but no UTF-8 encoder (the database's, the response's) takes it."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return False  # not JSON: the route says so
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the buffered body once, then the client's own messages
    (``http.disconnect`` when it leaves)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
