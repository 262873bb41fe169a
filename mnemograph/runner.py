"""Running turns for a known user and thread: the one path the CLI, the REST API and LangServe
share, so ownership, per-thread serialization and context are decided in one place.

A turn is a short sequence of named steps (:meth:`TurnRunner._run`): hold the thread, finish
any run a dead process left owed, mark the run, stream the graph, then either keep the turn
or take its question back out, and unmark. :class:`ReplyGate` answers ``invoke`` callers as
soon as the reply is durable while the post-reply memory work goes on.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from langchain_core.messages import AnyMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from graph.builder import PIPELINE, REPLY_NODE
from graph.context import Context
from graph.ports import ports_of
from graph.recall import RecallAhead
from graph.render import last_human_text
from mnemograph.services import Services
from mnemograph.validation import check_knobs, to_messages
from stores.errors import Gone, InvalidInput
from stores.ids import check_id
from stores.postgres.savers import PooledPostgresSaver
from stores.postgres.thread_locks import holding_thread

if TYPE_CHECKING:
    from mnemograph.metrics import Metrics

_NODE_NAMES = [name for name, _ in PIPELINE]
POST_REPLY_NODES = frozenset(_NODE_NAMES[_NODE_NAMES.index(REPLY_NODE) + 1 :])
"""Nodes that run after the reply."""
_REPLY_CHECKPOINT = frozenset(f"branch:to:{name}" for name in POST_REPLY_NODES)
"""Channels only the checkpoint holding the reply updates: it schedules the post-reply nodes."""

log = logging.getLogger(__name__)

_FORGET_TRIES = 5
"""Attempts at rolling a turn back (each re-reads the thread) before logging it as failed."""


def _gone() -> Gone:
    return Gone("this account was deleted; the turn was cancelled and nothing was kept")


def request_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """The per-request settings among ``knobs`` (unknown keys and ``None`` dropped), checked
    against their bounds (:func:`~mnemograph.validation.check_knobs`)."""
    return check_knobs(knobs)


@dataclass
class _TurnProgress:
    """What a streaming turn has shown so far."""

    turn: int = 0
    replied: bool = False
    """A post-reply node started: the reply exists, so a failure keeps the question."""
    final: dict[str, Any] = field(default_factory=dict)

    def note(self, mode: str, chunk: Any) -> None:
        if mode == "values" and isinstance(chunk, dict):
            self.turn = int(chunk.get("turn", 0) or 0)
            self.final = chunk
        elif mode == "tasks" and isinstance(chunk, dict) and chunk.get("name") in POST_REPLY_NODES:
            self.replied = True


class _Handover:
    """A streamed turn's chunks on their way from the turn's task to the consumer.

    Once the consumer has left after the reply, the turn goes on ``detached``: it finishes
    its memory work without handing anything over (nobody would take it).
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1)
        self.replied = False
        """A post-reply node started: the reply exists (and is durable, ``durability="sync"``)."""
        self.detached = False

    def note(self, mode: str, chunk: Any) -> None:
        if mode == "tasks" and isinstance(chunk, dict) and chunk.get("name") in POST_REPLY_NODES:
            self.replied = True

    def detach(self) -> None:
        """Stop handing chunks over, and free a hand-over blocked on the full queue."""
        self.detached = True
        while not self.queue.empty():
            self.queue.get_nowait()


def _log_failure(task: asyncio.Task[Any]) -> None:
    """Log the error of a detached turn, whose consumer is gone."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("post-reply work failed in %s: %r", task.get_name(), error)


class ReplyGate:
    """The ``invoke`` caller's answer: resolved with the turn's values once the checkpoint
    holding the reply is committed, or with the run's error if it fails before that."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.values: dict[str, Any] = {}
        self.saved: asyncio.Future[None] | None = None

    def watching(self, saved: asyncio.Future[None]) -> None:
        """The future the checkpointer resolves when the reply's checkpoint is committed."""
        self.saved = saved

    def replied(self) -> None:
        """The reply exists (a post-reply node started): answer once it is durable."""
        if self.reply.done():
            return
        saved, values = self.saved, self.values
        if saved is None or saved.done():
            self.reply.set_result(values)
            return

        def on_saved(future: asyncio.Future[None]) -> None:
            if future.cancelled() or self.reply.done():
                return
            error = future.exception()
            if error is not None:
                self.reply.set_exception(error)
            else:
                self.reply.set_result(values)

        saved.add_done_callback(on_saved)

    def finished(self) -> None:
        """The run is over: every checkpoint is written."""
        if not self.reply.done():
            self.reply.set_result(self.values)

    def failed(self, exc: BaseException) -> bool:
        """Hand the error to the caller; ``False`` if the caller was already answered."""
        if self.reply.done():
            return False
        self.reply.set_exception(exc)
        return True


class TurnRunner:
    """Runs turns on the compiled graph with the thread held exclusively.

    Two requests on one thread would otherwise both read checkpoint N and both write N+1,
    forking the chain. An in-process lock queues them cheaply; a Postgres advisory lock does
    the same across processes and is released by Postgres itself if the process dies.
    """

    def __init__(
        self, services: Services, graph: CompiledStateGraph[Any, Any, Any, Any] | None = None
    ) -> None:
        self.services = services
        self.graph = graph or services.state_graph()
        saver = self.graph.checkpointer
        self._saver = saver if isinstance(saver, PooledPostgresSaver) else None
        """The checkpointer when it can report commits and cache channels, else ``None``."""
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._background: set[asyncio.Task[None]] = set()
        self._work: dict[str, set[asyncio.Task[Any]]] = {}
        """Each user's running turns in this process (``invoke``'s whole turn, ``stream``'s
        producer), so deleting one user cancels and waits for that user's work only."""
        self._stopping: dict[str, int] = {}
        """Users being deleted in this process: their new turns are refused meanwhile."""
        self._killed: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        """Turns cancelled because their user was deleted (they end with :class:`Gone`)."""
        self.metrics: Metrics | None = None
        """The server's metrics (turns by door and outcome, node latency); the app sets it."""

    def context(self, user_id: str, **knobs: Any) -> Context:
        """The run's context: the user, this process's services and the request's knobs."""
        try:
            return Context(user_id=user_id, services=self.services, **request_knobs(knobs))
        except TypeError as exc:
            raise InvalidInput(str(exc)) from exc

    @asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread in this process (a lock) and across processes (advisory lock)."""
        lock = self._locks.get(thread_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[thread_id] = lock
        async with lock:
            pool = self.services.lock_pool
            if pool is None:
                yield
                return
            async with pool.connection(timeout=300) as conn, holding_thread(conn, thread_id):
                yield

    def config(
        self, thread_id: str, base: RunnableConfig | None = None, user_id: str | None = None
    ) -> RunnableConfig:
        """``base`` with the thread set (the only configurable the graph reads): here, in
        :meth:`hold` and in the steps of a turn, ``thread_id`` is the thread's storage key
        (``ThreadInfo.key``), never the id a client chose, which is only unique per user. Given
        ``user_id``, a run's config: ``user_id`` and ``thread_id`` also go in its
        ``metadata``, which every traced run carries (LangSmith, OpenTelemetry)."""
        config: RunnableConfig = dict(base or {})  # type: ignore[assignment]
        configurable = dict(config.get("configurable") or {})
        configurable["thread_id"] = thread_id
        config["configurable"] = configurable
        if user_id is not None:  # traces are filtered by the id the user knows
            metadata = dict(config.get("metadata") or {})
            metadata.update(user_id=user_id, thread_id=thread_id.removeprefix(f"{user_id}/"))
            config["metadata"] = metadata
        return config

    async def _recover(self, user_id: str, thread_id: str, knobs: dict[str, Any]) -> bool:
        """Finish a run that died after its last checkpoint (lock held by the caller).

        LangGraph resumes from the last durable checkpoint when invoked with no input, so
        memory writes owed by an acknowledged turn are completed, not lost.
        """
        config = self.config(thread_id, user_id=user_id)
        snapshot = await self.graph.aget_state(config)
        if not snapshot.next:
            return False
        log.warning("resuming unfinished run on thread %s (%s)", thread_id, snapshot.next)
        await self.graph.ainvoke(
            None, config, context=self.context(user_id, **knobs), durability="sync"
        )
        return True

    def _watch_reply(self, thread_id: str) -> asyncio.Future[None] | None:
        """Where the checkpointer can report commits, a future for the reply's checkpoint."""
        return self._saver.watch(thread_id, _REPLY_CHECKPOINT) if self._saver else None

    async def _run(
        self,
        user_id: str,
        thread_id: str,
        parsed: list[AnyMessage],
        config: RunnableConfig | None,
        knobs: dict[str, Any],
        stream_mode: Any,
        on_watch: Callable[[asyncio.Future[None]], None] | None = None,
    ) -> AsyncGenerator[tuple[str, Any]]:
        """One turn with the thread held: recover a dead run, mark, run, unmark.

        Given ``on_watch``, and a checkpointer that reports commits, the run uses
        ``durability="async"``: each checkpoint is written while the next step runs, and
        ``on_watch`` receives a future that resolves when the reply's checkpoint is
        committed. Otherwise ``durability="sync"``: a step's checkpoint is committed before
        the next starts, so a post-reply node starting proves the reply durable.
        """
        threads = self.services.thread_registry()
        progress = _TurnProgress()
        async with self.hold(thread_id):
            context = self.context(user_id, **knobs)
            saved = self._watch_reply(thread_id) if on_watch is not None else None
            if saved is not None and on_watch is not None:
                on_watch(saved)
            ahead: RecallAhead | None = None
            try:
                ahead = self._recall_ahead(context, parsed)
                if await self._settle_owed(user_id, thread_id, knobs) and ahead is not None:
                    ahead.cancel()  # the finished run wrote memories: recall sees them
                    ahead = self._recall_ahead(context, parsed)
                context.reply_saved = saved
                context.recall_ahead = ahead
                steps = cast(
                    AsyncGenerator[tuple[str, Any]],
                    self._stream_graph(thread_id, parsed, config, context, stream_mode, progress),
                )
                try:
                    async for mode, chunk in steps:
                        yield mode, chunk
                except BaseException:
                    # Cut off (the caller left) or failed: stop the graph first, so its last
                    # checkpoint is written before the rollback reads the thread.
                    await steps.aclose()
                    self._cache_messages(thread_id, None)
                    if not progress.replied:  # no reply: take the question back out
                        await self._forget(thread_id, parsed)
                        try:
                            await threads.end_run(thread_id)
                        except Exception:  # e.g. the user was deleted: keep the first error
                            log.warning("could not unmark the failed run on thread %s", thread_id)
                    raise
                self._cache_messages(thread_id, progress.final)
                await threads.end_run(thread_id)
            finally:
                if ahead is not None:
                    ahead.cancel()
                if saved is not None and self._saver is not None:
                    self._saver.unwatch(thread_id)
        every = self.services.settings.compact_every_turns
        if every and progress.turn and progress.turn % every == 0:
            await self.compact(thread_id)

    async def _settle_owed(self, user_id: str, thread_id: str, knobs: dict[str, Any]) -> bool:
        """Mark the run; first finish memory work an earlier, dead run still owes. ``True``
        when there was such work (it may have written memories)."""
        threads = self.services.thread_registry()
        owed = await threads.begin_run(thread_id, request_knobs(knobs))
        if owed is None:
            return False
        try:
            await self._recover(user_id, thread_id, owed)
        except Exception:  # owed work that keeps failing must not block new turns
            log.exception("could not finish the earlier run on thread %s", thread_id)
        return True

    def _recall_ahead(self, context: Context, parsed: list[AnyMessage]) -> RecallAhead | None:
        """Start the turn's recall now, beside the run's bookkeeping and checkpoint read.

        Called with the thread held, so the previous turn's memory writes (which hold the
        thread until they finish) are visible to it, as they are to ``load_memory``.
        """
        text = last_human_text(parsed)
        if not text:
            return None
        return RecallAhead.start(ports_of(self.services), context, text)

    async def _stream_graph(
        self,
        thread_id: str,
        parsed: list[AnyMessage],
        config: RunnableConfig | None,
        context: Context,
        stream_mode: Any,
        progress: _TurnProgress,
    ) -> AsyncIterator[tuple[str, Any]]:
        """Run the graph on the new messages, noting the turn's progress as it streams."""
        modes = list(stream_mode) if isinstance(stream_mode, list) else [stream_mode]
        run_config = self.config(thread_id, config, user_id=context.user_id)
        door = str((run_config.get("metadata") or {}).get("door", "unknown"))
        with self.metrics.turn(door) if self.metrics is not None else nullcontext() as seen:
            async for mode, chunk in self.graph.astream(
                {"messages": parsed},
                run_config,
                context=context,
                stream_mode=sorted({*modes, "values", "tasks"}),
                durability="sync" if context.reply_saved is None else "async",
            ):
                if seen is not None:
                    seen(mode, chunk)  # node latency from the tasks events
                progress.note(mode, chunk)
                yield mode, chunk

    def _cache_messages(self, thread_id: str, final: dict[str, Any] | None) -> None:
        """Hand the thread's final messages to the checkpointer, which serves them as the
        next turn's starting state instead of replaying every write since the last snapshot
        (see ``PooledPostgresSaver.remember_channels``); ``None`` drops what it holds."""
        saver = self._saver
        if saver is None:
            return
        if final is None or "messages" not in final:
            saver.forget_channels(thread_id)
        else:
            saver.remember_channels(thread_id, {"messages": final["messages"]})

    async def _forget(self, thread_id: str, parsed: list[AnyMessage]) -> None:
        """Take this turn back out of the thread after a failure before the memory work
        began, or a cut (the caller left before then): its question, and a reply that was
        saved but never followed up, so the thread keeps no trace of the turn."""
        config = self.config(thread_id)
        asked = {m.id for m in parsed if m.id is not None}
        for attempt in range(_FORGET_TRIES):
            try:
                if self._saver is not None:  # a cut run's last write may still be going
                    await self._saver.settled(thread_id)
                snapshot = await self.graph.aget_state(config)
                messages = list((snapshot.values or {}).get("messages", []))
                start = next((i for i, m in enumerate(messages) if m.id in asked), None)
                if start is None:
                    return
                # Only this turn wrote after its question (the thread is held).
                gone = [RemoveMessage(id=m.id) for m in messages[start:] if m.id is not None]
                # As the last node, so the thread does not look like owed memory work.
                last = PIPELINE[-1][0]
                try:
                    await self.graph.aupdate_state(config, {"messages": gone}, as_node=last)
                except ValueError:
                    # Cut right after the input checkpoint: the question is only in writes
                    # pending on it, which the state shows but an update does not start
                    # from; an empty update leaves them behind (the next loop checks).
                    await self.graph.aupdate_state(config, {"messages": []}, as_node=last)
            except Exception:
                if attempt + 1 == _FORGET_TRIES:
                    log.exception("could not roll back the failed turn on thread %s", thread_id)
                    return
                await asyncio.sleep(0.05 * (attempt + 1))

    async def compact(self, thread_id: str) -> None:
        """Drop checkpoints the thread's state no longer needs, so storage stays bounded.

        Messages are rebuilt from the newest snapshot plus later writes; everything before
        the snapshot is history only. Runs outside the thread lock and skips the thread if a
        new turn already holds it.
        """
        from mnemograph.retention import PruneReport, prune_thread

        pool = self.services.pool
        if pool is None:
            return
        try:
            async with pool.connection() as conn:
                await prune_thread(conn, thread_id, datetime.now(UTC), PruneReport())
        except Exception:  # compaction is housekeeping; the turn already succeeded
            log.exception("checkpoint compaction failed on thread %s", thread_id)

    async def _start(
        self, user_id: str, thread_id: str, messages: Sequence[Any]
    ) -> tuple[str, list[AnyMessage]]:
        """Check the turn's input and claim the user's thread; return its storage key (what
        the rest of the turn is keyed by) and the parsed messages."""
        check_id("thread id", thread_id)
        parsed = to_messages(messages)
        self._refuse_stopping(user_id)
        info = await self.services.thread_registry().claim(
            user_id, thread_id, title=parsed[0].text[:60]
        )
        return info.key, parsed

    async def invoke(
        self,
        user_id: str,
        thread_id: str,
        messages: Sequence[Any],
        *,
        config: RunnableConfig | None = None,
        on_token: Callable[[Any], None] | None = None,
        cut_if_left: bool = False,
        **knobs: Any,
    ) -> dict[str, Any]:
        """Answer as soon as the reply is durable; memory writes finish in the background.

        Summarizing and memory extraction can take the model seconds; the caller does not
        wait for them. The thread stays locked until they finish, so the next turn on the
        same thread sees their result, and a crash leaves a pending mark that the next turn
        (or :meth:`recover_all`) completes.

        ``on_token`` receives the reply's message chunks as the model streams them, for doors
        that stream the reply but must not own the turn: a client that goes away after the
        reply cannot cancel the memory work, which runs in the runner's background.

        ``cut_if_left``: a caller cancelled before the reply is durable (a client that left a
        streamed reply) cuts the turn, which is rolled back as a failed one; once the reply
        is durable, the caller going away changes nothing.
        """
        key, parsed = await self._start(user_id, thread_id, messages)
        self._refuse_stopping(user_id)
        gate = ReplyGate()
        task = asyncio.create_task(
            self._invoke_run(user_id, key, parsed, config, knobs, gate, on_token),
            name=f"turn:{key}",
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._track(user_id, task)
        try:
            return await asyncio.shield(gate.reply)
        except asyncio.CancelledError:
            if cut_if_left and not gate.reply.done():
                task.cancel()
                gate.reply.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise

    async def _invoke_run(
        self,
        user_id: str,
        thread_id: str,
        parsed: list[AnyMessage],
        config: RunnableConfig | None,
        knobs: dict[str, Any],
        gate: ReplyGate,
        on_token: Callable[[Any], None] | None = None,
    ) -> None:
        """The whole turn, reply and post-reply work, reporting the reply through ``gate``."""
        modes = ["values", "messages"] if on_token is not None else "values"
        try:
            async for mode, chunk in self._run(
                user_id, thread_id, parsed, config, knobs, modes, gate.watching
            ):
                if mode == "messages":
                    message, metadata = chunk
                    if on_token is not None and metadata.get("langgraph_node") == REPLY_NODE:
                        on_token(message)
                elif mode == "values":
                    gate.values = chunk
                elif mode == "tasks" and "input" in chunk and chunk.get("name") in POST_REPLY_NODES:
                    gate.replied()
            gate.finished()
        except BaseException as exc:
            if asyncio.current_task() in self._killed:  # its user was deleted
                gate.failed(_gone())
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            if not gate.failed(exc):
                log.exception("post-reply work failed on thread %s", thread_id)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def stream(
        self,
        user_id: str,
        thread_id: str,
        messages: Sequence[Any],
        *,
        stream_mode: Any = "values",
        config: RunnableConfig | None = None,
        **knobs: Any,
    ) -> AsyncIterator[Any]:
        """Stream a turn; the reply's tokens come first, memory work after, same connection.

        The turn runs in a task of its own (tracked per user, so deleting the user cancels
        it), handing chunks over one at a time. Closing this iterator (the client left)
        before the reply exists cuts the turn, which is rolled back exactly as a failed one:
        the thread keeps no trace of its question. Closed after the reply, nothing is
        cancelled: the memory work goes on in the runner's background, as after ``invoke``.
        """
        key, parsed = await self._start(user_id, thread_id, messages)
        self._refuse_stopping(user_id)
        wanted = set(stream_mode) if isinstance(stream_mode, list) else {stream_mode}
        handover = _Handover()

        async def produce() -> None:
            run = self._run(user_id, key, parsed, config, knobs, stream_mode)
            async with aclosing(run):  # a cut closes the turn here, in its own task
                async for mode, chunk in run:
                    handover.note(mode, chunk)
                    if mode in wanted and not handover.detached:
                        await handover.queue.put((mode, chunk))

        task = asyncio.create_task(produce(), name=f"stream:{key}")
        self._track(user_id, task)
        try:
            while True:
                getter = asyncio.ensure_future(handover.queue.get())
                try:
                    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not getter.done():
                        getter.cancel()
                if getter.done() and not getter.cancelled():
                    mode, chunk = getter.result()
                elif not handover.queue.empty():
                    mode, chunk = handover.queue.get_nowait()
                else:
                    break
                yield (mode, chunk) if isinstance(stream_mode, list) else chunk
            if task in self._killed:
                raise _gone()
            task.result()
        finally:
            if not task.done():
                if handover.replied:  # the consumer left after the reply: finish unwatched
                    handover.detach()
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                    task.add_done_callback(_log_failure)
                else:
                    task.cancel()
                    await asyncio.wait({task})

    def _track(self, user_id: str, task: asyncio.Task[Any]) -> None:
        """Count ``task`` as ``user_id``'s work until it ends."""
        tasks = self._work.setdefault(user_id, set())
        tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            tasks.discard(finished)
            if not tasks and self._work.get(user_id) is tasks:
                del self._work[user_id]

        task.add_done_callback(done)

    def _refuse_stopping(self, user_id: str) -> None:
        if user_id in self._stopping:
            raise _gone()

    @asynccontextmanager
    async def stopping(self, user_id: str) -> AsyncIterator[None]:
        """For the block's duration (a delete of ``user_id``): refuse the user's new turns in
        this process, and first cancel the ones running, waiting until each has ended.

        Only this user's turns are touched; other users' work goes on undisturbed. The
        database's tombstones refuse the writes of turns in other processes.
        """
        self._stopping[user_id] = self._stopping.get(user_id, 0) + 1
        try:
            running = set(self._work.get(user_id, ()))
            for task in running:
                if not task.done():
                    self._killed.add(task)
                    task.cancel()
            if running:
                await asyncio.wait(running)
            yield
        finally:
            left = self._stopping[user_id] - 1
            if left:
                self._stopping[user_id] = left
            else:
                del self._stopping[user_id]

    async def drain(self) -> None:
        """Wait for background post-reply work (shutdown, tests, benches)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def recover_all(self) -> int:
        """Complete every run a dead process left unfinished; returns how many were resumed."""
        threads = self.services.thread_registry()
        done = 0
        for thread_id, user_id in await threads.unfinished():
            async with self.hold(thread_id):
                owed = await threads.begin_run(thread_id, {})
                if owed is not None and await self._recover(user_id, thread_id, owed):
                    done += 1
                await threads.end_run(thread_id)
        return done
