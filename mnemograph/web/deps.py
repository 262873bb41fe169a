"""Request dependencies: who is calling (API key or JWT, rate-limited), and the app's services
and turn runner, as typed ``Annotated`` aliases the routes declare as parameters.

Everything they read lives on ``app.state``, set by the app's lifespan: ``services``,
``users`` (the key registry), ``runner`` and ``limiter``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from stores.errors import InvalidInput, ServiceUnavailable
from stores.ids import ID_PATTERN, check_id
from stores.knowledge.bolt import GraphStore

if TYPE_CHECKING:
    from stores.memory.store import MemoryStore
    from stores.postgres.users import UserRegistry


class RateLimiter:
    """Per-user token bucket: ``per_min`` requests a minute, bursts up to ``per_min``.

    In-process, so with several workers each enforces its own share; 0 turns it off.
    """

    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_min = per_min
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, user_id: str) -> bool:
        if self.per_min <= 0:
            return True
        now = self.clock()
        tokens, last = self._buckets.get(user_id, (float(self.per_min), now))
        tokens = min(float(self.per_min), tokens + (now - last) * self.per_min / 60.0)
        if len(self._buckets) > 100_000:  # bound memory: forget idle users
            self._buckets.clear()
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            return False
        self._buckets[user_id] = (tokens - 1.0, now)
        return True


async def get_services(request: Request) -> Services:
    """The app's open services."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_runner(request: Request) -> TurnRunner:
    """The app's turn runner (it also serializes work on a thread)."""
    runner: TurnRunner = request.app.state.runner
    return runner


RunnerDep = Annotated[TurnRunner, Depends(get_runner)]


JWT_LEEWAY_S = 60
"""Clock skew allowed between the identity provider and this server on the lifetime cap."""


def _jwt_subject(token: str, settings: Any) -> str:
    """The `sub` of a valid HS256 token: signature, expiry, audience and the lifetime cap
    (``settings.jwt_max_ttl_s``: `exp` at most that far from now, and from `iat` if given)."""
    import jwt

    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            options={"require": ["sub", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise HTTPException(401, f"invalid token: {exc}") from None
    cap = float(settings.jwt_max_ttl_s)
    exp, iat = float(claims["exp"]), claims.get("iat")
    if exp - time.time() > cap + JWT_LEEWAY_S or (iat is not None and exp - float(iat) > cap):
        raise HTTPException(
            401, f"invalid token: lives longer than {cap:.0f} s (MNEMOGRAPH_JWT_MAX_TTL_S)"
        )
    try:
        return check_id("user id", str(claims["sub"]))
    except InvalidInput as exc:
        raise HTTPException(401, f"invalid token: {exc}") from None


async def jwt_user(token: str, settings: Any, users: UserRegistry) -> str:
    """The user id a valid token names: its `sub` must be the id or the name of an existing,
    not deleted account (``users``), looked up on every request so a deletion holds at once."""
    user_id = await users.active(_jwt_subject(token, settings))
    if user_id is None:
        raise HTTPException(401, "invalid token: its subject is not an active account")
    return user_id


def rate_limit(state: Any, user_id: str) -> None:
    """429 with ``Retry-After`` once the user's bucket (on ``app.state``) is empty."""
    limiter: RateLimiter | None = getattr(state, "limiter", None)
    if limiter is not None and not limiter.allow(user_id):
        raise HTTPException(
            429,
            f"rate limit of {limiter.per_min} requests per minute exceeded; retry shortly",
            headers={"Retry-After": str(max(1, round(60 / limiter.per_min)))},
        )


async def authenticate(state: Any, headers: Mapping[str, str]) -> str:
    """The caller's user id from the request's headers alone (401 otherwise): the key in
    `Authorization: Bearer <key>` or `X-Api-Key: <key>` (what ``langgraph_sdk`` sends); the
    bearer token wins when both are given. ``state`` is the app's ``app.state``."""
    header = headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    key = key or headers.get("x-api-key", "").strip()
    if not key:
        raise HTTPException(401, "missing API key (Authorization: Bearer <key>, or X-Api-Key)")
    settings = state.services.settings
    if settings.jwt_secret is not None and key.count(".") == 2:
        user_id: str | None = await jwt_user(key, settings, state.users)
    else:
        user_id = await state.users.authenticate(key)
    if user_id is None:
        raise HTTPException(401, "invalid API key")
    return str(user_id)


BEARER = HTTPBearer(
    auto_error=False,
    description="An API key (`mnemograph users create`) or, with MNEMOGRAPH_JWT_SECRET set, "
    "an HS256 JWT whose `sub` names an account.",
)
API_KEY = APIKeyHeader(
    name="X-Api-Key", auto_error=False, description="An API key (what `langgraph_sdk` sends)."
)
"""The two ways to present a credential, as OpenAPI security schemes: declared by
:func:`current_user`, so every route that needs a caller lists them (``/docs`` offers
"Authorize"). They only read the headers; :func:`authenticate` decides."""


async def current_user(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
    _api_key: Annotated[str | None, Depends(API_KEY)] = None,
) -> str:
    """The caller's user id. The app's gate (``mnemograph.web.middleware.Gate``) has already
    authenticated and rate-limited the request from its headers; without the gate (an app
    hosting these routes on its own), this does both here. The two credential parameters
    are for the OpenAPI document only (direct callers pass the request alone)."""
    known = getattr(request.state, "user_id", None)
    if isinstance(known, str):
        return known
    user_id = await authenticate(request.app.state, request.headers)
    rate_limit(request.app.state, user_id)
    return user_id


def memory_store(services: Services) -> MemoryStore:
    """Long-term memory, or a 503 naming it when this server runs without it.

    A plain call in the route, not a dependency: query validation answers first (422).
    """
    if services.memory is None:
        raise ServiceUnavailable("long-term memory", "not configured on this server")
    return services.memory


async def get_graph_store(services: ServicesDep) -> GraphStore:
    """The knowledge-graph store, or a 503 naming it when no graph server is configured."""
    graph = services.graph
    if graph is None:
        raise ServiceUnavailable("graph server", "not configured on this server")
    return graph


User = Annotated[str, Depends(current_user)]
"""The authenticated (and rate-limited) caller's user id."""
Id = Annotated[str, Path(pattern=ID_PATTERN, description="1-128 of A-Z a-z 0-9 _ : @ -, "
                         "starting with a letter or digit")]  # fmt: skip
"""An id in a path (thread, checkpoint, memory, assistant): a 422 naming the parameter when it
does not match the id alphabet (``stores.ids``), before the route runs."""
GraphStoreDep = Annotated[GraphStore, Depends(get_graph_store)]
