"""The one assistant: the graph ``mnemograph``, its drawing and its schemas; and ``/info``.

The server serves a single graph, so there is one assistant. It answers to the graph's name
and to the id langgraph_api would give the graph's default assistant (``uuid5`` of the
name), so clients written for either keep working.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid5

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter

from mnemograph.validation import Knobs
from mnemograph.web.deps import Id, RunnerDep, User
from mnemograph.web.routes.protocol.bodies import AssistantSearch
from mnemograph.web.routes.protocol.wire import json_response
from stores.errors import NotFound

log = logging.getLogger(__name__)

GRAPH_ID = "mnemograph"
ASSISTANT_ID = str(uuid5(UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), GRAPH_ID))
"""langgraph_api's id for a graph's default assistant (its ``NAMESPACE_GRAPH``)."""
_CREATED = datetime(2025, 1, 1, tzinfo=UTC).isoformat()

router = APIRouter(tags=["Agent Protocol"])


def check_assistant(assistant_id: str) -> None:
    """404 unless ``assistant_id`` names this server's graph (by name or id)."""
    if assistant_id not in (GRAPH_ID, ASSISTANT_ID):
        raise NotFound(f"assistant not found: this server serves the graph {GRAPH_ID!r}")


def assistant_json() -> dict[str, Any]:
    return {
        "assistant_id": ASSISTANT_ID,
        "graph_id": GRAPH_ID,
        "name": GRAPH_ID,
        "description": "Chat agent with durable, per-user memory",
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": _CREATED,
        "updated_at": _CREATED,
    }


def _matches(body: AssistantSearch) -> bool:
    if body.graph_id is not None and body.graph_id != GRAPH_ID:
        return False
    if body.name is not None and body.name.lower() not in GRAPH_ID:
        return False
    meta = assistant_json()["metadata"]
    return all(meta.get(k) == v for k, v in (body.metadata or {}).items())


@router.get("/info", summary="Server info and capabilities (no key needed)")
async def info(request: Request) -> Response:
    return json_response({
        "version": request.app.version,
        "flags": {"assistants": True, "crons": False, "langsmith": False},
        "host": {"kind": "mnemograph"},
    })  # fmt: skip


@router.post("/assistants/search", summary="The assistants (one: the mnemograph graph)")
async def search_assistants(body: AssistantSearch, user: User) -> Response:
    found = [assistant_json()] if _matches(body) else []
    return json_response(found[body.offset : body.offset + body.limit])


@router.post("/assistants/count", summary="How many assistants match (0 or 1)")
async def count_assistants(body: AssistantSearch, user: User) -> Response:
    return json_response(1 if _matches(body) else 0)


@router.get("/assistants/{assistant_id}", summary="The assistant")
async def get_assistant(assistant_id: Id, user: User) -> Response:
    check_assistant(assistant_id)
    return json_response(assistant_json())


@router.get("/assistants/{assistant_id}/graph", summary="The graph's nodes and edges")
async def get_graph(
    assistant_id: Id,
    user: User,
    runner: RunnerDep,
    xray: Annotated[int | bool, Query()] = False,
) -> Response:
    check_assistant(assistant_id)
    return json_response(runner.graph.get_graph(xray=xray).to_json())


def _schema(make: Callable[[], Any]) -> Any:
    try:
        return make()
    except Exception:  # a schema that cannot be drawn is omitted, as langgraph_api does
        log.debug("schema unavailable", exc_info=True)
        return None


@router.get("/assistants/{assistant_id}/schemas", summary="Input, output, state, context")
async def get_schemas(assistant_id: Id, user: User, runner: RunnerDep) -> Response:
    check_assistant(assistant_id)
    graph = runner.graph
    return json_response({
        "graph_id": GRAPH_ID,
        "input_schema": _schema(graph.get_input_jsonschema),
        "output_schema": _schema(graph.get_output_jsonschema),
        "state_schema": _schema(lambda: TypeAdapter(graph.builder.state_schema).json_schema()),
        "config_schema": None,
        "context_schema": Knobs.model_json_schema(),
    })  # fmt: skip


@router.get("/assistants/{assistant_id}/subgraphs", summary="Subgraphs (there are none)")
async def get_subgraphs(assistant_id: Id, user: User) -> Response:
    check_assistant(assistant_id)
    return json_response({})
