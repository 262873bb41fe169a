"""``auth.path`` of ``langgraph.json``: who is calling ``langgraph dev``, and what they may see.

Identity comes from the credential, as on every other door: ``Authorization: Bearer <key>``
(or ``X-API-Key``) names a user through the user registry, or, with
``MNEMOGRAPH_JWT_SECRET`` set, an HS256 JWT does through its ``sub`` (the REST API's rules,
``mnemograph.web.deps``). A request with no credential acts as the dev user
(``MNEMOGRAPH_DEV_USER``, default ``dev``; empty turns that off and every request needs a
credential). A bad credential is a 401, never the dev user.

Authorization keeps each user to their own data: threads, runs and crons carry the owner in
their metadata and are filtered by it, store namespaces are scoped under the user id (the
memories namespace is ``(user_id, "memories")``), and assistants (graph configurations) are
shared. The graph takes ``user_id`` from the authenticated identity
(``mnemograph.studio_graph``); for a readable run record the handler also writes it over any
``user_id`` the request's context carried.
"""

from __future__ import annotations

from typing import Any, cast

from langgraph_sdk import Auth

from mnemograph.studio_services import SERVICES

auth = Auth()

OWNER = "owner"
"""The metadata key that records a thread's (run's, cron's) owner."""


def _unauthorized(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=401, detail=detail)


def credential(headers: dict[bytes, bytes]) -> str:
    """The presented API key or JWT ("" if none), as the REST API reads it."""
    header = headers.get(b"authorization", b"").decode("latin-1").strip()
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return key or headers.get(b"x-api-key", b"").decode("latin-1").strip()


@auth.authenticate
async def authenticate(headers: dict[bytes, bytes]) -> Auth.types.MinimalUserDict:
    """The caller's user id from their API key or JWT; the dev user without a credential."""
    key = credential(headers)
    if not key:
        dev_user = SERVICES.current_settings().dev_user
        if not dev_user:
            raise _unauthorized("missing API key (Authorization: Bearer <key>)")
        return {"identity": dev_user, "display_name": dev_user, "is_authenticated": True}
    services = await SERVICES.get()
    settings = services.settings
    if settings.jwt_secret is not None and key.count(".") == 2:
        from fastapi import HTTPException

        from mnemograph.web.deps import jwt_user  # the REST API's JWT rules, not a copy

        try:
            user_id: str | None = await jwt_user(key, settings, services.user_registry())
        except HTTPException as exc:
            raise _unauthorized(str(exc.detail)) from None
    else:
        user_id = await services.user_registry().authenticate(key)
    if user_id is None:
        raise _unauthorized("invalid API key")
    return {"identity": str(user_id), "display_name": str(user_id), "is_authenticated": True}


def _identity(ctx: Auth.types.AuthContext) -> str:
    return str(ctx.user.identity)


def _own(value: dict[str, Any], identity: str) -> None:
    """Record the owner in a created object's metadata (in place: the platform keeps it)."""
    metadata = value.get("metadata")
    if metadata is None:
        metadata = value["metadata"] = {}
    metadata[OWNER] = identity


@auth.on.assistants
async def assistants_are_shared(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Assistants are the graph's configurations, the same for every user."""
    return None


@auth.on.threads.create_run
async def run_as_caller(
    ctx: Auth.types.AuthContext, value: Auth.types.RunsCreate
) -> Auth.types.FilterType:
    """A run on one of the caller's threads; its context's ``user_id`` is the caller."""
    identity = _identity(ctx)
    _own(cast(dict[str, Any], value), identity)
    kwargs = value.get("kwargs") or {}
    config = kwargs.get("config") or {}
    for part in (kwargs.get("context"), config.get("configurable")):
        if isinstance(part, dict) and "user_id" in part:
            part["user_id"] = identity
    return {OWNER: identity}


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Every store operation stays under the caller's id (``(user_id, ...)``)."""
    identity = _identity(ctx)
    namespace = tuple(value.get("namespace") or ())
    if not namespace or namespace[0] != identity:
        value["namespace"] = (identity, *namespace)


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """Threads, runs and crons: created with the caller as owner, found only by their owner."""
    identity = _identity(ctx)
    if ctx.action == "create" and isinstance(value, dict):
        _own(value, identity)
    return {OWNER: identity}


__all__ = ["auth", "authenticate", "credential"]
