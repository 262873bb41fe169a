"""Threads as the Agent Protocol shows them: the ownership row, the client's metadata and
the checkpointed state, put together; and the thread operations every door shares (create,
delete, delete later).

A thread's metadata is the client's own JSON (``threads.create(metadata=...)``, ``PATCH``).
It is kept in LangGraph's store table under ``(user_id, "thread_metadata")``, so the GDPR
delete, which removes every store row under the user's prefix, takes it too. Each thread
also reports ``graph_id`` and ``assistant_id`` in its metadata, as langgraph_api's do, so
clients that filter threads by graph (Studio) find them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request
from langgraph.store.base import GetOp, Item
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.types import StateSnapshot

from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from mnemograph.web.errors import Conflict
from mnemograph.web.routes.protocol.assistants import ASSISTANT_ID, GRAPH_ID
from mnemograph.web.routes.protocol.wire import public_values
from stores.errors import InvalidInput, NotFound
from stores.ids import check_id
from stores.postgres.threads import ThreadInfo

log = logging.getLogger(__name__)

META_LEAF = "thread_metadata"
DEFAULT_METADATA = {"graph_id": GRAPH_ID, "assistant_id": ASSISTANT_ID}


def _namespace(user_id: str) -> tuple[str, str]:
    return (user_id, META_LEAF)


def client_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """What of ``metadata`` is stored: the server's keys (``graph_id``, ``assistant_id``)
    may be sent only with the server's values (the SDK sends ``graph_id``) and are not kept."""
    out = dict(metadata or {})
    for key, value in DEFAULT_METADATA.items():
        if key in out and out.pop(key) != value:
            raise InvalidInput(f"metadata {key!r} is the server's: it must be {value!r}")
    return out


def thread_json(
    info: ThreadInfo, metadata: dict[str, Any], snapshot: StateSnapshot | None
) -> dict[str, Any]:
    """A thread in the SDK's ``Thread`` shape; ``snapshot`` gives values and status."""
    return {
        "thread_id": info.thread_id,
        "created_at": info.created_at.isoformat(),
        "updated_at": info.updated_at.isoformat(),
        "metadata": {**DEFAULT_METADATA, **metadata},
        "status": "busy" if snapshot is not None and snapshot.next else "idle",
        "values": public_values(dict(snapshot.values or {})) if snapshot is not None else {},
        "interrupts": {},
        "config": {},
        "error": None,
    }


class ThreadBook:
    """The protocol's view of threads, and the deletes that must hold the thread's lock."""

    def __init__(self, services: Services, runner: TurnRunner) -> None:
        self.services = services
        self.runner = runner
        self.meta = AsyncPostgresStore(conn=services.postgres())
        self._later: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ reads
    async def owned(self, user_id: str, thread_id: str) -> ThreadInfo:
        """The caller's thread; a missing or foreign one is the same 404."""
        check_id("thread id", thread_id)
        return await self.services.thread_registry().get(thread_id, user_id)

    async def snapshot(self, key: str, checkpoint_id: str | None = None) -> StateSnapshot:
        """The state of the thread stored under ``key`` (``ThreadInfo.key``), now or at
        ``checkpoint_id``."""
        configurable: dict[str, Any] = {"thread_id": key}
        if checkpoint_id is not None:
            configurable |= {"checkpoint_id": check_id("checkpoint id", checkpoint_id),
                             "checkpoint_ns": ""}  # fmt: skip
        return await self.runner.graph.aget_state({"configurable": configurable})

    async def metadata(self, user_id: str, thread_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(thread_ids)
        if not ids:
            return {}
        found = await self.meta.abatch([GetOp(_namespace(user_id), t) for t in ids])
        return {
            t: dict(item.value) if isinstance(item, Item) else {}
            for t, item in zip(ids, found, strict=True)
        }

    async def as_json(
        self, user_id: str, infos: list[ThreadInfo], *, with_values: bool = True
    ) -> list[dict[str, Any]]:
        metas = await self.metadata(user_id, (i.thread_id for i in infos))
        out = []
        for info in infos:
            snapshot = await self.snapshot(info.key) if with_values else None
            out.append(thread_json(info, metas.get(info.thread_id, {}), snapshot))
        return out

    async def one(self, user_id: str, thread_id: str) -> dict[str, Any]:
        info = await self.owned(user_id, thread_id)
        return (await self.as_json(user_id, [info]))[0]

    # ------------------------------------------------------------------ writes
    async def create(
        self,
        user_id: str,
        thread_id: str | None,
        metadata: dict[str, Any] | None,
        if_exists: str | None,
    ) -> dict[str, Any]:
        """Create a thread (a server-issued uuid when ``thread_id`` is ``None``).

        An existing thread of the caller is a 409, or with ``if_exists="do_nothing"`` is
        returned as it is; another user's id is a 404, as everywhere.
        """
        registry = self.services.thread_registry()
        tid = check_id("thread id", thread_id) if thread_id is not None else str(uuid.uuid4())
        try:
            await registry.get(tid, user_id)
        except NotFound:
            pass
        else:
            if if_exists == "do_nothing":
                return await self.one(user_id, tid)
            raise Conflict(f"thread {tid!r} already exists")
        metadata = client_metadata(metadata)
        info = await registry.claim(user_id, tid)
        if metadata:
            await self.meta.aput(_namespace(user_id), tid, metadata, index=False)
        return thread_json(info, metadata, None)

    async def patch_metadata(
        self, user_id: str, thread_id: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``metadata`` into the thread's (as langgraph_api's ``PATCH`` does)."""
        info = await self.owned(user_id, thread_id)
        metadata = client_metadata(metadata)
        merged = {**(await self.metadata(user_id, [thread_id]))[thread_id], **metadata}
        await self.meta.aput(_namespace(user_id), thread_id, merged, index=False)
        return thread_json(info, merged, await self.snapshot(info.key))

    async def delete(self, user_id: str, thread_id: str) -> None:
        """Delete the thread's checkpoints, ownership row and metadata, never under a
        running turn (the thread's lock is held while deleting)."""
        info = await self.owned(user_id, thread_id)
        checkpointer = self.services.checkpointer
        async with self.runner.hold(info.key):
            if checkpointer is not None:
                await checkpointer.adelete_thread(info.key)
            await self.services.thread_registry().delete(thread_id, user_id)
            await self.meta.adelete(_namespace(user_id), thread_id)

    def delete_later(self, user_id: str, thread_id: str) -> None:
        """Delete once the thread's turn, memory work included, is over (stateless runs)."""

        async def run() -> None:
            try:
                await self.delete(user_id, thread_id)
            except NotFound:
                pass
            except Exception:
                log.exception("could not delete the stateless run's thread %s", thread_id)

        task = asyncio.create_task(run(), name=f"forget:{thread_id}")
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def drain(self) -> None:
        """Wait for pending deletes (shutdown, tests)."""
        while self._later:
            await asyncio.gather(*list(self._later), return_exceptions=True)


async def get_book(request: Request) -> ThreadBook:
    book: ThreadBook = request.app.state.thread_book
    return book


BookDep = Annotated[ThreadBook, Depends(get_book)]
