"""The Agent Protocol store, mapped to the caller's long-term memories.

Whatever namespace a client names, it reads and writes its own memories: the namespace is
always ``(user_id, "memories")`` (and answers carry that namespace), so no request can reach
another user's items. A search with a ``query`` is the hybrid search the agent recalls with
(full text and vectors fused, blended with importance and recency; ``score`` in [0, 1]).

A put value's text is ``value["text"]`` (or ``"content"``); ``kind``, ``importance``,
``subject``, ``event_at``, ``provenance`` and ``metadata`` become the memory's fields and
any other key goes into its ``metadata``. PII redaction applies, as to every memory write.
A ``filter`` matches top-level keys of the stored value by equality (a nested object
matches key by key).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from mnemograph.web.deps import ServicesDep, User, memory_store
from mnemograph.web.routes.protocol.bodies import StoreDelete, StorePut, StoreSearch
from mnemograph.web.routes.protocol.wire import json_response
from stores.errors import InvalidInput, NotFound
from stores.ids import check_id
from stores.memory.model import MemoryItem, namespace, value_of

router = APIRouter(tags=["Agent Protocol"])

_FIELDS = ("kind", "importance", "subject", "provenance", "metadata")
_SERVER_KEYS = frozenset({"id", "user_id", "created_at", "last_seen_at", "seen_count", "context"})
SCAN_LIMIT = 10_000
"""Memories a filtered listing looks through."""


def item_json(item: MemoryItem, score: float | None = None, *, scored: bool = False) -> dict:
    """A memory as the SDK's ``Item`` (``SearchItem`` with ``scored``)."""
    value = value_of(item)
    value.pop("context", None)  # indexing aid, never returned
    out: dict[str, Any] = {
        "namespace": list(namespace(item.user_id)),
        "key": item.id,
        "value": value,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.last_seen_at.isoformat(),
    }
    if scored:
        out["score"] = score
    return out


def put_fields(value: Mapping[str, Any]) -> dict[str, Any]:
    """``MemoryStore.put``'s keyword arguments for a put ``value``."""
    text = value.get("text", value.get("content"))
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput('a memory value needs a "text" (or "content") string')
    fields: dict[str, Any] = {"text": text}
    for name in _FIELDS:
        if value.get(name) is not None:
            fields[name] = value[name]
    if not isinstance(fields.get("metadata", {}), dict):
        raise InvalidInput('a memory\'s "metadata" must be an object')
    if not isinstance(fields.get("provenance", []), list):
        raise InvalidInput('a memory\'s "provenance" must be a list')
    for name in ("kind", "subject"):
        if not isinstance(fields.get(name, ""), str):
            raise InvalidInput(f'a memory\'s "{name}" must be a string')
    importance = fields.get("importance", 0.5)
    if isinstance(importance, bool) or not isinstance(importance, int | float):
        raise InvalidInput("importance must be a number in [0, 1]")
    if value.get("event_at") is not None:
        try:
            fields["event_at"] = datetime.fromisoformat(str(value["event_at"]))
        except ValueError:
            raise InvalidInput("event_at must be an ISO 8601 date") from None
    extras = {
        k: v for k, v in value.items()
        if k not in (*_FIELDS, "text", "content", "event_at") and k not in _SERVER_KEYS
    }  # fmt: skip
    if "content" in value and "text" in value:
        extras["content"] = value["content"]
    if extras:
        fields["metadata"] = {**fields.get("metadata", {}), **extras}
    return fields


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        if any(str(k).startswith("$") for k in wanted):
            raise InvalidInput("filter operators ($eq, $gt, ...) are not supported here")
        return isinstance(actual, dict) and all(
            _matches(actual.get(k), v) for k, v in wanted.items()
        )
    return bool(actual == wanted) and isinstance(actual, bool) == isinstance(wanted, bool)


@router.put("/store/items", status_code=204, summary="Remember (or edit) one of your memories")
async def put_item(body: StorePut, user: User, services: ServicesDep) -> Response:
    memory = memory_store(services)
    fields = put_fields(body.value)
    if services.redact is not None:
        fields["text"] = services.redact(fields["text"])
    await memory.put(user, check_id("memory key", body.key), **fields)
    return Response(status_code=204)


@router.get("/store/items", summary="One of your memories by key (null when there is none)")
async def get_item(
    user: User,
    services: ServicesDep,
    key: Annotated[str, Query(min_length=1, max_length=128)],
    namespace: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    memory = memory_store(services)
    try:
        item = await memory.get(user, check_id("memory key", key))
    except NotFound:
        return json_response(None)
    return json_response(item_json(item))


@router.delete("/store/items", status_code=204, summary="Forget one of your memories")
async def delete_item(body: StoreDelete, user: User, services: ServicesDep) -> Response:
    memory = memory_store(services)
    try:
        await memory.delete(user, check_id("memory key", body.key))
    except NotFound:
        pass  # as LangGraph's store: deleting what is not there is no error
    return Response(status_code=204)


@router.post("/store/items/search", summary="Hybrid search (or list) of your memories")
async def search_items(body: StoreSearch, user: User, services: ServicesDep) -> Response:
    memory = memory_store(services)
    query = " ".join((body.query or "").split())
    end = body.offset + body.limit
    found: list[tuple[MemoryItem, float | None]]
    if query:
        k = max(4 * end, memory.config.candidates) if body.filter else end
        found = [(h.item, h.score) for h in await memory.search(user, query, k)]
    elif body.filter:
        found = [(item, None) for item in await memory.list(user, limit=SCAN_LIMIT)]
    else:
        items = await memory.list(user, limit=body.limit, offset=body.offset)
        return json_response({"items": [item_json(i, scored=True) for i in items]})
    if body.filter:
        found = [(i, s) for i, s in found if _matches(value_of(i), body.filter)]
    page = found[body.offset : end]
    return json_response({"items": [item_json(i, s, scored=True) for i, s in page]})


@router.post("/store/namespaces", summary="Your namespaces (one: your memories)")
async def list_namespaces(user: User, services: ServicesDep) -> Response:
    memory = memory_store(services)
    has_items = await memory.count(user) > 0
    return json_response({"namespaces": [list(namespace(user))] if has_items else []})
