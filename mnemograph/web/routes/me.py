"""Your account as a whole (GDPR): export everything, restore an export, or delete
everything."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from mnemograph.backup import ExportDocument, ImportReport
from mnemograph.lifecycle import delete_user, export_user, import_user
from mnemograph.web.deps import RunnerDep, ServicesDep, User
from mnemograph.web.schemas import Deleted

router = APIRouter(prefix="/me")

IMPORT_PATH = "/me/import"
"""The route the gate lets take a body up to ``MNEMOGRAPH_IMPORT_MAX_BYTES`` (the app sets
``app.state.body_limits`` from it); every other route stays at 256 KB."""


@router.get("/export", summary="Everything stored about you, as one JSON document")
async def export_me(user: User, services: ServicesDep) -> dict[str, Any]:
    return await export_user(services, user)


@router.post(
    IMPORT_PATH.removeprefix("/me"),
    summary="Restore an export of yours into your account",
    responses={
        409: {"description": "a thread you have holds other content, or its id was retired "
              "by a deletion; nothing was imported"},
        413: {"description": "body over MNEMOGRAPH_IMPORT_MAX_BYTES"},
        422: {"description": "not a valid export document; nothing was imported"},
    },
)  # fmt: skip
async def import_me(
    doc: ExportDocument, user: User, services: ServicesDep, runner: RunnerDep
) -> ImportReport:
    """Restore a ``GET /me/export`` document, idempotently: threads (resumable), memories
    and graph facts. Everything goes into **your** account, whatever user id the document
    names (so an export can move to a new account); the whole document is checked before
    anything is written. A deletion is never undone here: a thread id retired by one is a
    409 (only an administrator's ``mnemograph users import --undelete`` lifts it)."""
    return await import_user(services, doc, user_id=user, runner=runner)


@router.delete("", summary="Delete your account and everything stored about you")
async def delete_me(user: User, services: ServicesDep, runner: RunnerDep) -> Deleted:
    # Cancels this user's running turns (only theirs) and refuses their writes from then on.
    return Deleted(deleted=await delete_user(services, user, runner=runner))
