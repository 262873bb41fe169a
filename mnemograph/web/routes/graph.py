"""Your knowledge-graph facts: the current ones, and the full history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from mnemograph.web.deps import GraphStoreDep, User

router = APIRouter(prefix="/graph")


@router.get("", summary="Your current knowledge-graph facts")
async def graph_current(user: User, graph: GraphStoreDep) -> dict[str, Any]:
    return {"facts": await graph.current_facts(user)}


@router.get("/history", summary="All facts, including invalidated ones")
async def graph_history(user: User, graph: GraphStoreDep) -> dict[str, Any]:
    return {"facts": await graph.history(user)}
