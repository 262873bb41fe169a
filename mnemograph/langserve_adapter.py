"""The legacy LangServe door: the turn runner as a LangChain runnable for ``/agent/*``.

LangServe is archived upstream; the door stays because the project card names it. It only
translates: who and which thread come from the request's config (filled by the server from
the credential), the turn itself is :class:`~mnemograph.runner.TurnRunner`'s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import BaseModel, ConfigDict

from graph.context import REQUEST_KNOBS
from stores.errors import InvalidInput


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
        for key in REQUEST_KNOBS:
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
        out["metadata"] = {**(out.get("metadata") or {}), "door": "langserve"}  # for metrics
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
