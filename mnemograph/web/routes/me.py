"""Your account as a whole (GDPR): export everything, or delete everything."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from mnemograph.lifecycle import delete_user, export_user
from mnemograph.web.deps import RunnerDep, ServicesDep, User
from mnemograph.web.schemas import Deleted

router = APIRouter(prefix="/me")


@router.get("/export", summary="Everything stored about you, as one JSON document")
async def export_me(user: User, services: ServicesDep) -> dict[str, Any]:
    return await export_user(services, user)


@router.delete("", summary="Delete your account and everything stored about you")
async def delete_me(user: User, services: ServicesDep, runner: RunnerDep) -> Deleted:
    # Cancels this user's running turns (only theirs) and refuses their writes from then on.
    return Deleted(deleted=await delete_user(services, user, runner=runner))
