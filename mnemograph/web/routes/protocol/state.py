"""A thread's checkpointed state, now or at a checkpoint, and its history, in the SDK's
``ThreadState`` shape (what ``RemoteGraph.get_state`` turns back into a ``StateSnapshot``).

State is read through the compiled graph the turn runner runs on, which knows the channels
(the ``DeltaChannel`` of messages among them). Writing state (``update_state``) is not
offered: a client could plant assistant messages, and through them memories.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from langchain_core.runnables import RunnableConfig
from langgraph.types import StateSnapshot

from mnemograph.web.deps import Id, User
from mnemograph.web.routes.protocol.bodies import AtCheckpoint, History
from mnemograph.web.routes.protocol.records import BookDep
from mnemograph.web.routes.protocol.wire import json_response, public_values
from stores.errors import InvalidInput, NotFound
from stores.ids import check_id

router = APIRouter(tags=["Agent Protocol"])


def _checkpoint(config: RunnableConfig | None, thread_id: str) -> dict[str, Any] | None:
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("checkpoint_id"):
        return None
    return {
        "thread_id": thread_id,
        "checkpoint_ns": configurable.get("checkpoint_ns") or "",
        "checkpoint_id": configurable["checkpoint_id"],
        "checkpoint_map": configurable.get("checkpoint_map"),
    }


def snapshot_json(snapshot: StateSnapshot, thread_id: str) -> dict[str, Any]:
    """``snapshot`` as langgraph_api's ``state_snapshot_to_thread_state`` writes it. A
    thread with no checkpoint yet reports an empty state at checkpoint ``None``."""
    checkpoint = _checkpoint(snapshot.config, thread_id) or {
        "thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None,
        "checkpoint_map": None,
    }  # fmt: skip
    parent = _checkpoint(snapshot.parent_config, thread_id)
    return {
        "values": public_values(dict(snapshot.values or {})),
        "next": list(snapshot.next),
        "tasks": [
            {
                "id": task.id,
                "name": task.name,
                "path": list(task.path),
                "error": str(task.error) if task.error else None,
                "interrupts": [],
                "checkpoint": None,
                "state": None,
                "result": getattr(task, "result", None),
            }
            for task in snapshot.tasks
        ],
        "metadata": dict(snapshot.metadata or {}),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "interrupts": [],
        "checkpoint_id": checkpoint["checkpoint_id"],
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }


def _select(state: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Only the fields named in ``select`` (``values.<key>`` picks one state key)."""
    if not select:
        return state
    out: dict[str, Any] = {}
    for name in select:
        if name.startswith("values."):
            values = out.setdefault("values", {})
            key = name.split(".", 1)[1]
            if key in state["values"]:
                values[key] = state["values"][key]
        elif name in state:
            out[name] = state[name]
    return out


async def _state_at(
    book: BookDep, user: str, thread_id: str, checkpoint_id: str | None
) -> dict[str, Any]:
    info = await book.owned(user, thread_id)
    snapshot = await book.snapshot(info.key, checkpoint_id)
    if checkpoint_id is not None and snapshot.created_at is None:
        raise NotFound(f"checkpoint {checkpoint_id!r} not found")
    return snapshot_json(snapshot, thread_id)


@router.get("/threads/{thread_id}/state", summary="The thread's current state")
async def get_state(
    thread_id: Id,
    user: User,
    book: BookDep,
    subgraphs: bool = False,
    select: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> Response:
    return json_response(_select(await _state_at(book, user, thread_id, None), select))


@router.get("/threads/{thread_id}/state/{checkpoint_id}", summary="The state at a checkpoint")
async def get_state_at(
    thread_id: Id, checkpoint_id: Id, user: User, book: BookDep, subgraphs: bool = False
) -> Response:
    return json_response(await _state_at(book, user, thread_id, checkpoint_id))


@router.post("/threads/{thread_id}/state/checkpoint", summary="The state at a checkpoint")
async def post_state_at(thread_id: Id, body: AtCheckpoint, user: User, book: BookDep) -> Response:
    checkpoint_id = body.checkpoint.get("checkpoint_id")
    if checkpoint_id is not None and not isinstance(checkpoint_id, str):
        raise InvalidInput("checkpoint.checkpoint_id must be a string")
    return json_response(await _state_at(book, user, thread_id, checkpoint_id))


def _checkpoint_id_of(value: str | dict[str, Any] | None) -> str | None:
    if isinstance(value, dict):
        value = value.get("checkpoint_id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("a checkpoint id must be a string")
    return check_id("checkpoint id", value)


async def _history(user: str, thread_id: str, body: History, book: BookDep) -> Response:
    info = await book.owned(user, thread_id)
    configurable: dict[str, Any] = {"thread_id": info.key}
    start = _checkpoint_id_of(body.checkpoint)
    if start is not None:
        configurable |= {"checkpoint_id": start, "checkpoint_ns": ""}
    before = _checkpoint_id_of(body.before)
    states = [
        _select(snapshot_json(snapshot, thread_id), body.select)
        async for snapshot in book.runner.graph.aget_state_history(
            {"configurable": configurable},
            filter=body.metadata or None,
            before={"configurable": {"thread_id": info.key, "checkpoint_id": before}}
            if before
            else None,
            limit=body.limit,
        )
    ]
    return json_response(states)


@router.post("/threads/{thread_id}/history", summary="The thread's past states, newest first")
async def post_history(thread_id: Id, body: History, user: User, book: BookDep) -> Response:
    return await _history(user, thread_id, body, book)


@router.get("/threads/{thread_id}/history", summary="The thread's past states, newest first")
async def get_history(
    thread_id: Id,
    user: User,
    book: BookDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    before: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    return await _history(user, thread_id, History(limit=limit, before=before, select=None), book)
