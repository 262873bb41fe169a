"""A user's whole footprint across every store: export it as one document, restore such a
document, or delete it.

GDPR requests must cover checkpoints, store items, long-term memories, graph nodes and the
outbox alike; keeping the three operations in one module means a new store cannot be added
without someone seeing that export, import and delete need to learn about it too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from graph.builder import PIPELINE
from mnemograph.backup import ExportDocument, ExportedThread, ImportReport
from mnemograph.services import Services
from mnemograph.threads_view import read_thread, thread_values
from stores.errors import Conflict, Gone, NotFound, ServiceUnavailable
from stores.ids import check_id, thread_key
from stores.knowledge.rules import Fact
from stores.memory.model import MemoryItem, check_text
from stores.postgres.restore import RestoreStore
from stores.postgres.thread_locks import holding_thread, try_thread_xact_lock

if TYPE_CHECKING:
    from mnemograph.runner import TurnRunner

log = logging.getLogger(__name__)


async def export_user(services: Services, user_id: str) -> dict[str, Any]:
    """Everything stored for ``user_id`` as one JSON-ready document, the shape
    :class:`mnemograph.backup.ExportDocument` describes and :func:`import_user` restores.

    Each thread carries what resuming it needs (messages with their ids, summary, turns);
    each memory its indexing context; the graph every relation, invalidated ones included.
    """
    check_id("user id", user_id)
    threads = [
        await read_thread(services, info, omit=("user_id",))
        for info in await services.thread_registry().list(user_id, limit=100_000)
    ]
    doc: dict[str, Any] = {
        "user_id": user_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "threads": threads,
        "memories": [],
        "graph": {"entities": [], "relations": []},
        "graph_outbox": [],
    }
    if services.memory is not None:
        doc["memories"] = await services.memory.export_user(user_id)
    if services.facts is not None:
        doc.update(await services.facts.export_user(user_id))
    return doc


_MESSAGES: dict[str, type[BaseMessage]] = {
    "human": HumanMessage,
    "ai": AIMessage,
    "system": SystemMessage,
}
"""The message classes an export's ``type`` names."""


@dataclass
class _Plan:
    """What an import will write, decided (and checked) before anything is written."""

    threads: list[ExportedThread] = field(default_factory=list)
    """Threads to write: new ones, and existing ones that hold no state yet."""
    unchanged: int = 0
    """Threads already stored with the document's content."""
    lift: list[str] = field(default_factory=list)
    """Storage keys of the document's threads that a deletion retired."""
    memories: list[MemoryItem] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    relations: list[Fact] = field(default_factory=list)


async def import_user(
    services: Services,
    doc: ExportDocument,
    *,
    user_id: str | None = None,
    undelete: bool = False,
    runner: TurnRunner | None = None,
) -> ImportReport:
    """Restore an export document (the inverse of :func:`export_user`) for ``user_id``, by
    default the document's own user id; idempotent: a second import changes nothing.

    - **Everything is checked before anything is written.** The document's shape is
      :class:`~mnemograph.backup.ExportDocument`'s; then, against what is stored: a thread
      the user already has with other content is a :class:`~stores.errors.Conflict` (one
      with the same messages, summary and turns is skipped, so is an empty one filled); a
      deleted user (:class:`~stores.errors.Gone`) or a thread id a deletion retired
      (``Conflict``) is refused unless ``undelete``; graph facts need the graph server up.
    - **Threads come back resumable**: one checkpoint holding the messages (with their
      ids), the summary and the turn count, written as the graph's last node writes (the
      thread is idle, owes no memory work), under the thread's lock (``runner``'s when
      given), then the exported title and times. The next turn continues from it.
    - **Memories** keep their ids, texts, importance, timestamps, provenance and context;
      **graph facts** their ids, validity and provenance. Both are upserts by id: an item
      already stored identically is left alone, another value under the same id is
      replaced. A relation's ``source_thread`` that names the document user's thread is
      renamed to the target's. PII redaction applies to memory texts and entity names, as
      to every memory and graph write.

    ``undelete`` lifts the deletion tombstones of ``user_id`` and of the document's thread
    ids (no others) first: the one way back from :func:`delete_user`, an administrator's
    decision (``mnemograph users import --undelete``); no HTTP route passes it. A user whose
    deletion has not finished (tombstoned, rows left) is refused even then.

    A failure after the checks (a server gone away, a turn racing a thread) can leave part
    of the document written; importing it again completes it.
    """
    target = check_id("user id", user_id or doc.user_id)
    plan = await _plan_import(services, doc, target, undelete=undelete)
    lifted = 0
    if undelete:
        lifted = await RestoreStore(services.postgres()).lift_tombstones(target, plan.lift)
    restored = 0
    for thread in plan.threads:
        restored += await _restore_thread(services, runner, target, thread)
    memories = {"created": 0, "updated": 0, "unchanged": 0}
    if plan.memories and services.memory is not None:
        memories = await services.memory.import_user(target, plan.memories)
    graph = {"graph_entities": 0, "graph_relations": 0}
    if (plan.entities or plan.relations) and services.facts is not None:
        graph = await services.facts.import_user(target, plan.entities, plan.relations)
    return ImportReport(
        user_id=target,
        source_user_id=doc.user_id,
        threads_restored=restored,
        threads_unchanged=plan.unchanged + len(plan.threads) - restored,
        memories_created=memories["created"],
        memories_updated=memories["updated"],
        memories_unchanged=memories["unchanged"],
        graph_entities=graph["graph_entities"],
        graph_relations=graph["graph_relations"],
        tombstones_lifted=lifted,
    )


async def _plan_import(
    services: Services, doc: ExportDocument, target: str, *, undelete: bool
) -> _Plan:
    """Check ``doc`` against what is stored for ``target`` and decide what to write; reads
    only, so a refusal leaves everything as it was."""
    restore = RestoreStore(services.postgres())
    if await restore.user_gone(target):
        if not undelete:
            raise Gone(
                f"user {target} was deleted; nothing was imported (an administrator restores "
                "a deleted user with `mnemograph users import --undelete`)"
            )
        if await restore.has_data(target):
            raise Conflict(
                f"the deletion of user {target} has not finished; run `mnemograph users "
                "delete` for it again, then import; nothing was imported"
            )
    plan = _Plan()
    registry = services.thread_registry()
    new: dict[str, str] = {}  # storage key -> thread id, for threads not stored yet
    conflicts: list[str] = []
    for thread in doc.threads:
        try:
            info = await registry.get(thread.thread_id, target)
        except NotFound:
            new[thread_key(target, thread.thread_id)] = thread.thread_id
            plan.threads.append(thread)
            continue
        live = await thread_values(services, info.key)
        if not _has_state(live):
            plan.threads.append(thread)
        elif _same_thread(thread, live):
            plan.unchanged += 1
        else:
            conflicts.append(thread.thread_id)
    if conflicts:
        raise Conflict(
            f"{_some(conflicts)} already exist{'s' if len(conflicts) == 1 else ''} with other "
            "content; nothing was imported (delete them, or import into another account)"
        )
    plan.lift = await restore.retired_threads(target, list(new))
    if plan.lift and not undelete:
        raise Conflict(
            f"{_some([new[k] for k in plan.lift])}: the id was retired when its data was "
            "deleted, and deletion is final; nothing was imported (an administrator can "
            "restore it with `mnemograph users import --undelete`)"
        )
    redact: Callable[[str], str] = services.redact or (lambda text: text)
    if doc.memories:
        if services.memory is None:
            raise ServiceUnavailable("long-term memory", "not open here; nothing was imported")
        plan.memories = [
            MemoryItem(
                id=m.id,
                user_id=target,
                text=check_text(redact(m.text)),
                kind=m.kind,
                importance=m.importance,
                event_at=m.event_at,
                created_at=m.created_at,
                last_seen_at=m.last_seen_at,
                provenance=list(m.provenance),
                metadata=dict(m.metadata),
                subject=m.subject,
                seen_count=m.seen_count,
                context=redact(m.context) if m.context else m.context,
            )
            for m in doc.memories
        ]
    if doc.graph.entities or doc.graph.relations:
        await _plan_graph(services, doc, target, plan, redact)
    return plan


async def _plan_graph(
    services: Services,
    doc: ExportDocument,
    target: str,
    plan: _Plan,
    redact: Callable[[str], str],
) -> None:
    """The document's graph as it will be written; the graph server must answer now (an
    import does not queue), and no relation id may already join other entities."""
    graph = services.graph
    if graph is None:
        raise ServiceUnavailable("graph server", "not configured here; nothing was imported")
    await graph.ping()
    entities: dict[str, dict[str, Any]] = {}
    for e in doc.graph.entities:
        name = redact(e.name)
        entities.setdefault(
            name,
            {"name": name, "display": redact(e.display) if e.display else e.display,
             "norm_name": e.norm_name, "created_at": e.created_at},
        )  # fmt: skip
    plan.entities = list(entities.values())
    prefix = f"{doc.user_id}/"
    for r in doc.graph.relations:
        thread = r.source_thread
        if thread is not None and target != doc.user_id and thread.startswith(prefix):
            thread = thread_key(target, thread[len(prefix) :])
        plan.relations.append(
            Fact(
                id=r.id,
                subject=redact(r.subject),
                subject_display=redact(r.subject_display),
                predicate=r.predicate,
                object=redact(r.object),
                object_display=redact(r.object_display),
                confidence=r.confidence,
                created_at=r.created_at,
                valid_from=r.valid_from,
                invalid_at=r.invalid_at,
                source_thread=thread,
                source_message=r.source_message,
            )
        )
    stored = {f["id"]: (f["subject"], f["object"]) for f in await graph.history(target)}
    clashes = [
        r["id"]
        for r in plan.relations
        if r["id"] in stored and stored[r["id"]] != (r["subject"], r["object"])
    ]
    if clashes:
        raise Conflict(
            f"{_some(clashes, 'graph relation')} already join{'s' if len(clashes) == 1 else ''} "
            "other entities; nothing was imported"
        )


def _some(ids: list[str], noun: str = "thread") -> str:
    """A few ids for a message: ``thread 'a'``, ``threads 'a', 'b', 'c' and 3 more``."""
    shown = ", ".join(repr(i) for i in ids[:3])
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return f"{noun}{'s' if len(ids) > 1 else ''} {shown}{more}"


def _has_state(values: dict[str, Any]) -> bool:
    """Whether a thread's state holds anything a restore could overwrite."""
    return bool(values.get("messages") or values.get("summary") or values.get("turn"))


def _same_thread(thread: ExportedThread, values: dict[str, Any]) -> bool:
    """Whether the stored state is the document's thread: messages (id, type, text),
    summary and, when the document has it, the turn count. Title and times are not
    content (every turn moves ``updated_at``)."""
    stored = [(m.id, m.type, m.text) for m in values.get("messages", [])]
    wanted = [(m.id, m.type, m.content) for m in thread.messages]
    return (
        stored == wanted
        and values.get("summary", "") == thread.summary
        and (thread.turns is None or values.get("turn", 0) == thread.turns)
    )


def _thread_state(thread: ExportedThread) -> dict[str, Any]:
    """The checkpoint values that resume ``thread``: its messages with their own ids, its
    summary, its turn count (documents without one: its replies, the best guess)."""
    state: dict[str, Any] = {
        "messages": [_MESSAGES[m.type](content=m.content, id=m.id) for m in thread.messages],
        "turn": thread.turns
        if thread.turns is not None
        else sum(m.type == "ai" for m in thread.messages),
    }
    if thread.summary:
        state["summary"] = thread.summary
    return state


@asynccontextmanager
async def _holding(services: Services, runner: TurnRunner | None, key: str) -> AsyncIterator[None]:
    """Hold the thread as a turn does: ``runner``'s lock (in-process and advisory), or the
    advisory lock alone where no runner lives in this process (the CLI)."""
    if runner is not None:
        async with runner.hold(key):
            yield
        return
    pool = services.lock_pool
    if pool is None:
        yield
        return
    async with pool.connection(timeout=300) as conn, holding_thread(conn, key):
        yield


async def _restore_thread(
    services: Services, runner: TurnRunner | None, user_id: str, thread: ExportedThread
) -> bool:
    """Claim the thread, write its state (unless a racing turn or import already did), then
    its title and times; ``False`` if it turned out to be stored already, identically."""
    info = await services.thread_registry().claim(user_id, thread.thread_id, title=thread.title)
    async with _holding(services, runner, info.key):
        live = await thread_values(services, info.key)
        if _has_state(live):
            if _same_thread(thread, live):
                return False
            raise Conflict(f"thread {thread.thread_id!r} changed while it was being imported")
        state = _thread_state(thread)
        if _has_state(state):
            config: Any = {"configurable": {"thread_id": info.key}}
            # As the last node: the thread is idle and owes no memory work (a checkpoint
            # whose ``next`` is empty), so the next turn simply starts from it.
            await services.state_graph().aupdate_state(config, state, as_node=PIPELINE[-1][0])
    await RestoreStore(services.postgres()).set_thread_row(
        user_id,
        thread.thread_id,
        title=thread.title,
        created_at=thread.created_at,
        updated_at=thread.updated_at,
    )
    return True


async def delete_user(
    services: Services,
    user_id: str,
    *,
    keep_account: bool = False,
    runner: TurnRunner | None = None,
    wait_s: float = 30.0,
) -> dict[str, int]:
    """Remove every trace of ``user_id`` and report what was removed, per store.

    Deletion is final, from every door and across processes:

    1. the user id is tombstoned first (``mnemo_deleted_users``): from its commit on, the
       database refuses every write for the user (store items, memories, outbox rows,
       thread claims), in any process, and no new turn of theirs can start;
    2. ``runner`` (this process's turn runner, if any) cancels the user's running turns,
       and only theirs, and waits until each has ended;
    3. their threads are tombstoned (``mnemo_deleted_threads``): no checkpoint can be
       written on them any more and nobody can claim their ids again; turns of the user
       still running in other processes are waited for (each thread's lock, ``wait_s`` at
       most: their writes are refused anyway, and graph writes check after writing);
    4. then everything stored is deleted.

    Threads go through the checkpointer's own ``adelete_thread`` so checkpoints, blobs and
    writes all disappear; store items are removed by namespace prefix (every namespace starts
    with the user id). ``keep_account`` wipes the data but lifts the user's tombstone at the
    end (their threads' ids stay retired). The only way back is an administrator's
    :func:`import_user` with ``undelete`` (``mnemograph users import --undelete``).
    """
    check_id("user id", user_id)
    users = services.user_registry()
    await users.tombstone(user_id)
    try:
        async with runner.stopping(user_id) if runner is not None else nullcontext():
            owned = await services.thread_registry().tombstone_user_threads(user_id)
            await _wait_for_turns(services, owned, wait_s)
            return await _delete_data(services, user_id, owned, keep_account=keep_account)
    finally:
        if keep_account:
            await users.revive(user_id)


async def _wait_for_turns(services: Services, thread_ids: list[str], wait_s: float) -> None:
    """Wait (up to ``wait_s``) for turns on these threads in any process to end: each holds
    its thread's advisory lock for the whole turn, memory work included.

    The lock is only tried, never waited on in PostgreSQL: a blocked lock request cut by
    the deadline could still be granted and stay held by a pooled connection.
    """
    pool = services.lock_pool
    if pool is None or not thread_ids:
        return
    deadline = time.monotonic() + wait_s
    async with pool.connection(timeout=wait_s) as conn:
        for thread_id in thread_ids:
            while not await try_thread_xact_lock(conn, thread_id):  # autocommit: a probe
                if time.monotonic() > deadline:
                    log.warning("a turn of a deleted user still runs elsewhere; deleting anyway")
                    return
                await asyncio.sleep(0.05)


async def _delete_data(
    services: Services, user_id: str, owned: list[str], *, keep_account: bool
) -> dict[str, int]:
    counts: dict[str, int] = {}
    if services.memory is not None:  # before the generic store sweep, so counts are its own
        counts["memories"] = await services.memory.delete_user(user_id)
    if services.checkpointer is not None:
        for thread_id in owned:
            await services.checkpointer.adelete_thread(thread_id)
    async with services.postgres().connection() as conn:
        cur = await conn.execute("DELETE FROM mnemo_threads WHERE user_id = %s", (user_id,))
        counts["threads"] = cur.rowcount
        cur = await conn.execute(
            "DELETE FROM store WHERE prefix = %s OR prefix LIKE %s",
            (user_id, user_id.replace("_", r"\_") + ".%"),
        )
        counts["store_items"] = cur.rowcount
    if services.facts is not None:  # graph, queued writes and this process's caches
        counts.update(await services.facts.delete_user(user_id))
    if not keep_account and services.users is not None:
        counts["account_rows"] = await services.users.delete(user_id)
    return counts
