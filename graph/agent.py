"""Running turns for a known user and thread: the one path the CLI, the REST API and LangServe
share, so ownership, per-thread serialization and context are decided in one place."""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage, RemoveMessage, convert_to_messages
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.utils import ConfigurableFieldSpec
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field

from graph.builder import PIPELINE, REPLY_NODE, build_graph
from graph.context import Context
from stores.errors import InvalidInput
from stores.ids import check_id
from stores.postgres import PooledPostgresSaver
from stores.services import Services

MAX_MESSAGE_CHARS = 32_000
_NODE_NAMES = [name for name, _ in PIPELINE]
POST_REPLY_NODES = frozenset(_NODE_NAMES[_NODE_NAMES.index(REPLY_NODE) + 1 :])
"""Nodes that run after the reply."""
_REPLY_CHECKPOINT = frozenset(f"branch:to:{name}" for name in POST_REPLY_NODES)
"""Channels only the checkpoint holding the reply updates: it schedules the post-reply nodes."""

log = logging.getLogger(__name__)

_CONTEXT_KEYS = (
    "strategy",
    "window_k",
    "max_tokens",
    "summary_trigger_tokens",
    "buffer_tokens",
    "recall_k",
    "recall_tokens",
    "kg_tokens",
    "kg_hops",
)


def to_messages(raw: Sequence[Any]) -> list[AnyMessage]:
    """Accept LangChain (`{"type": "human"}`) and OpenAI (`{"role": "user"}`) message dicts.

    Only user messages may come from outside: a caller must not be able to plant assistant or
    system turns (and through them, memories) in a thread.
    """
    if not raw:
        raise InvalidInput("messages must hold at least one message")
    try:
        messages: list[BaseMessage] = convert_to_messages(list(raw))
    except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
        raise InvalidInput(f"unreadable message: {exc}") from exc
    for message in messages:
        # Ids are ours to give: a caller-chosen id could overwrite a stored message.
        message.id = str(uuid.uuid4())
        if message.type != "human":
            raise InvalidInput(f"only user messages can be sent, not {message.type!r}")
        if not isinstance(message.content, str):
            raise InvalidInput("message content must be a string")
        if not message.content.strip():
            raise InvalidInput("message content is empty")
        if len(message.content) > MAX_MESSAGE_CHARS:
            raise InvalidInput(f"message longer than {MAX_MESSAGE_CHARS} characters")
        if any(ord(c) < 32 and c not in "\n\r\t" for c in message.content):
            raise InvalidInput("message contains control characters")
    return messages  # type: ignore[return-value]


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
        self.graph = graph or build_graph(
            services.checkpointer,
            services.store,
            delta_messages=services.settings.delta_messages,
        )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._background: set[asyncio.Task[None]] = set()

    def context(self, user_id: str, **knobs: Any) -> Context:
        chosen = {k: v for k, v in knobs.items() if k in _CONTEXT_KEYS and v is not None}
        try:
            return Context(user_id=user_id, services=self.services, **chosen)
        except TypeError as exc:
            raise InvalidInput(str(exc)) from exc

    @asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        lock = self._locks.get(thread_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[thread_id] = lock
        async with lock:
            pool = self.services.lock_pool
            if pool is None:
                yield
                return
            async with pool.connection(timeout=300) as conn:
                await conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 7))", (thread_id,))
                try:
                    yield
                finally:
                    await conn.execute(
                        "SELECT pg_advisory_unlock(hashtextextended(%s, 7))", (thread_id,)
                    )

    def config(self, thread_id: str, base: RunnableConfig | None = None) -> RunnableConfig:
        config: RunnableConfig = dict(base or {})  # type: ignore[assignment]
        configurable = dict(config.get("configurable") or {})
        configurable["thread_id"] = thread_id
        config["configurable"] = configurable
        return config

    def _knobs(self, knobs: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in knobs.items() if k in _CONTEXT_KEYS and v is not None}

    async def _recover(self, user_id: str, thread_id: str, knobs: dict[str, Any]) -> bool:
        """Finish a run that died after its last checkpoint (lock held by the caller).

        LangGraph resumes from the last durable checkpoint when invoked with no input, so
        memory writes owed by an acknowledged turn are completed, not lost.
        """
        config = self.config(thread_id)
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
        saver = self.graph.checkpointer
        if isinstance(saver, PooledPostgresSaver):
            return saver.watch(thread_id, _REPLY_CHECKPOINT)
        return None

    def _unwatch_reply(self, thread_id: str) -> None:
        saver = self.graph.checkpointer
        if isinstance(saver, PooledPostgresSaver):
            saver.unwatch(thread_id)

    async def _run(
        self,
        user_id: str,
        thread_id: str,
        parsed: list[AnyMessage],
        config: RunnableConfig | None,
        knobs: dict[str, Any],
        stream_mode: Any,
        on_watch: Callable[[asyncio.Future[None]], None] | None = None,
    ) -> AsyncIterator[tuple[str, Any]]:
        """One turn with the thread held: recover a dead run, mark, run, unmark.

        Given ``on_watch``, and a checkpointer that reports commits, the run uses
        ``durability="async"``: each checkpoint is written while the next step runs, and
        ``on_watch`` receives a future that resolves when the reply's checkpoint is
        committed. Otherwise ``durability="sync"``: a step's checkpoint is committed before
        the next starts, so a post-reply node starting proves the reply durable.
        """
        threads = self.services.threads
        assert threads is not None
        async with self.hold(thread_id):
            saved = self._watch_reply(thread_id) if on_watch is not None else None
            if saved is not None and on_watch is not None:
                on_watch(saved)
            try:
                owed = await threads.begin_run(thread_id, self._knobs(knobs))
                if owed is not None:
                    try:
                        await self._recover(user_id, thread_id, owed)
                    except Exception:  # owed work that keeps failing must not block new turns
                        log.exception("could not finish the earlier run on thread %s", thread_id)
                modes = list(stream_mode) if isinstance(stream_mode, list) else [stream_mode]
                turn = 0
                replied = False
                final: dict[str, Any] = {}
                context = self.context(user_id, **knobs)
                context.reply_saved = saved
                try:
                    async for mode, chunk in self.graph.astream(
                        {"messages": parsed},
                        self.config(thread_id, config),
                        context=context,
                        stream_mode=sorted({*modes, "values", "tasks"}),
                        durability="sync" if saved is None else "async",
                    ):
                        if mode == "values" and isinstance(chunk, dict):
                            turn = int(chunk.get("turn", 0) or 0)
                            final = chunk
                        elif (
                            mode == "tasks"
                            and isinstance(chunk, dict)
                            and chunk.get("name") in POST_REPLY_NODES
                        ):
                            replied = True
                        yield mode, chunk
                except BaseException:
                    self._cache_messages(thread_id, None)
                    if not replied:  # no reply: take the question back out, no half turn
                        await self._forget(thread_id, parsed)
                        await threads.end_run(thread_id)
                    raise
                self._cache_messages(thread_id, final)
                await threads.end_run(thread_id)
            finally:
                if saved is not None:
                    self._unwatch_reply(thread_id)
        every = self.services.settings.compact_every_turns
        if every and turn and turn % every == 0:
            await self.compact(thread_id)

    def _cache_messages(self, thread_id: str, final: dict[str, Any] | None) -> None:
        """Hand the thread's final messages to the checkpointer, which serves them as the
        next turn's starting state instead of replaying every write since the last snapshot
        (see ``PooledPostgresSaver.remember_channels``); ``None`` drops what it holds."""
        saver = self.graph.checkpointer
        if not isinstance(saver, PooledPostgresSaver):
            return
        if final is None or "messages" not in final:
            saver.forget_channels(thread_id)
        else:
            saver.remember_channels(thread_id, {"messages": final["messages"]})

    async def _forget(self, thread_id: str, parsed: list[AnyMessage]) -> None:
        """Remove this turn's input from the thread after a failure before the reply."""
        try:
            snapshot = await self.graph.aget_state(self.config(thread_id))
            present = {m.id for m in (snapshot.values or {}).get("messages", [])}
            gone = [RemoveMessage(id=m.id) for m in parsed if m.id is not None and m.id in present]
            if gone:
                # As the last node, so the thread does not look like owed memory work.
                await self.graph.aupdate_state(
                    self.config(thread_id), {"messages": gone}, as_node=PIPELINE[-1][0]
                )
        except Exception:
            log.exception("could not roll back the failed turn on thread %s", thread_id)

    async def compact(self, thread_id: str) -> None:
        """Drop checkpoints the thread's state no longer needs, so storage stays bounded.

        Messages are rebuilt from the newest snapshot plus later writes; everything before
        the snapshot is history only. Runs outside the thread lock and skips the thread if a
        new turn already holds it.
        """
        from stores.retention import PruneReport, prune_thread

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
    ) -> list[AnyMessage]:
        check_id("thread id", thread_id)
        parsed = to_messages(messages)
        assert self.services.threads is not None
        await self.services.threads.claim(user_id, thread_id, title=parsed[0].text[:60])
        return parsed

    async def invoke(
        self,
        user_id: str,
        thread_id: str,
        messages: Sequence[Any],
        *,
        config: RunnableConfig | None = None,
        **knobs: Any,
    ) -> dict[str, Any]:
        """Answer as soon as the reply is durable; memory writes finish in the background.

        Summarizing and memory extraction can take the model seconds; the caller does not
        wait for them. The thread stays locked until they finish, so the next turn on the
        same thread sees their result, and a crash leaves a pending mark that the next turn
        (or :meth:`recover_all`) completes.
        """
        parsed = await self._start(user_id, thread_id, messages)
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[dict[str, Any]] = loop.create_future()

        def answer(values: dict[str, Any], saved: asyncio.Future[None] | None) -> None:
            """Resolve the caller's future with the reply once its checkpoint is durable."""
            if reply.done():
                return
            if saved is None or saved.done():
                reply.set_result(values)
                return

            def on_saved(future: asyncio.Future[None]) -> None:
                if future.cancelled() or reply.done():
                    return
                if future.exception() is not None:
                    reply.set_exception(future.exception())  # type: ignore[arg-type]
                else:
                    answer(values, None)

            saved.add_done_callback(on_saved)

        async def run() -> None:
            values: dict[str, Any] = {}
            saved: asyncio.Future[None] | None = None

            def watching(future: asyncio.Future[None]) -> None:
                nonlocal saved
                saved = future

            try:
                async for mode, chunk in self._run(
                    user_id, thread_id, parsed, config, knobs, "values", watching
                ):
                    if mode == "values":
                        values = chunk
                    elif (
                        mode == "tasks"
                        and "input" in chunk
                        and chunk.get("name") in POST_REPLY_NODES
                    ):
                        answer(values, saved)
                answer(values, None)  # the run is over: every checkpoint is written
            except BaseException as exc:
                if not reply.done():
                    reply.set_exception(exc)
                else:
                    log.exception("post-reply work failed on thread %s", thread_id)
                if isinstance(exc, asyncio.CancelledError):
                    raise

        task = asyncio.create_task(run(), name=f"turn:{thread_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return await asyncio.shield(reply)

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
        """Stream a turn; the reply's tokens come first, memory work after, same connection."""
        parsed = await self._start(user_id, thread_id, messages)
        wanted = set(stream_mode) if isinstance(stream_mode, list) else {stream_mode}
        async for mode, chunk in self._run(user_id, thread_id, parsed, config, knobs, stream_mode):
            if mode in wanted:
                yield (mode, chunk) if isinstance(stream_mode, list) else chunk

    async def drain(self) -> None:
        """Wait for background post-reply work (shutdown, tests, benches)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def recover_all(self) -> int:
        """Complete every run a dead process left unfinished; returns how many were resumed."""
        threads = self.services.threads
        assert threads is not None
        done = 0
        for thread_id, user_id in await threads.unfinished():
            async with self.hold(thread_id):
                owed = await threads.begin_run(thread_id, {})
                if owed is not None and await self._recover(user_id, thread_id, owed):
                    done += 1
                await threads.end_run(thread_id)
        return done


class AgentInput(BaseModel):
    """What `/agent` accepts: new user messages, LangChain- or OpenAI-shaped."""

    model_config = ConfigDict(extra="forbid")
    messages: list[dict[str, Any]] = Field(
        ...,
        min_length=1,
        max_length=16,
        description='e.g. [{"type": "human", "content": "hi"}] or [{"role": "user", ...}]',
    )


class AgentRunnable(RunnableSerializable[dict[str, Any], dict[str, Any]]):
    """The graph as LangServe sees it: user and thread come from the request's config, which
    the server fills from the credential, never from the body."""

    runner: Any = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """Declared so LangServe passes these keys through from the request's config."""
        specs = [
            ConfigurableFieldSpec(
                id="thread_id", annotation=str, name="Thread id", description="Thread to continue"
            )
        ]
        for key in _CONTEXT_KEYS:
            annotation: Any = str if key == "strategy" else int
            specs.append(ConfigurableFieldSpec(id=key, annotation=annotation | None, default=None))
        return specs

    def _who(self, config: RunnableConfig | None) -> tuple[str, str, dict[str, Any]]:
        configurable = dict((config or {}).get("configurable") or {})
        user_id = configurable.pop("user_id", None)
        thread_id = configurable.pop("thread_id", None)
        if not user_id or not thread_id:
            raise InvalidInput("configurable.thread_id is required")
        return str(user_id), str(thread_id), configurable

    @staticmethod
    def _graph_config(config: RunnableConfig | None) -> RunnableConfig:
        """The request's config without LangServe's event aggregator.

        LangServe attaches an aggregator to every invoke and stream request, which records
        every callback event of the run (each node, model call and parser, with inputs and
        outputs) so it could return them; with callback events off (ours) it then drops
        them. Forwarded into the graph, it cost about 10% of the server's CPU under load, and
        it would go on recording the post-reply memory work after the response was sent.
        Other handlers (``stream_events``, LangSmith tracing) are kept.
        """
        from langchain_core.callbacks.base import BaseCallbackManager
        from langserve.callbacks import AsyncEventAggregatorCallback

        out: dict[str, Any] = dict(config or {})
        callbacks = out.get("callbacks")
        if isinstance(callbacks, list):
            out["callbacks"] = [
                c for c in callbacks if not isinstance(c, AsyncEventAggregatorCallback)
            ]
        elif isinstance(callbacks, BaseCallbackManager):
            manager = callbacks.copy()
            for handler in list(manager.handlers):
                if isinstance(handler, AsyncEventAggregatorCallback):
                    manager.remove_handler(handler)
            out["callbacks"] = manager
        return out  # type: ignore[return-value]

    def _messages(self, value: Any) -> list[Any]:
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict) or "messages" not in value:
            raise InvalidInput("input must be an object with a 'messages' list")
        return list(value["messages"])

    def invoke(self, input: dict[str, Any], config: RunnableConfig | None = None, **kw: Any) -> Any:
        raise NotImplementedError("use the async API")

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        user_id, thread_id, configurable = self._who(config)
        result = await self.runner.invoke(
            user_id,
            thread_id,
            self._messages(input),
            config=self._graph_config(config),
            **configurable,
        )
        return {"messages": result.get("messages", []), "summary": result.get("summary", "")}

    async def astream(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        user_id, thread_id, configurable = self._who(config)
        async for chunk in self.runner.stream(
            user_id,
            thread_id,
            self._messages(input),
            config=self._graph_config(config),
            **configurable,
        ):
            yield chunk
