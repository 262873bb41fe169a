"""The services of a ``langgraph dev`` process: opened once, on first use, shared by every
extension point ``langgraph.json`` names, and closed when the last of them lets go.

``langgraph dev`` (langgraph-api) loads each extension point on its own: the checkpointer
and the store when its lifespan starts, the graph after them, the auth handler on the first
request, the REST app with its own lifespan. Each gets the same :class:`ProcessServices`:
the checkpointer and store factories and the app hold a *lease* (an async context manager
the platform enters at start-up and exits at shutdown), nodes and the auth handler borrow
the services while a lease holds them open. Nothing is opened at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore
from pydantic import Field, field_validator

from mnemograph.services import Services, open_services
from stores.errors import ConfigurationError
from stores.ids import check_id
from stores.settings import Settings


class StudioSettings(Settings):
    """The deployment's settings plus what only the Studio host reads."""

    dev_user: str = Field(
        default="dev",
        description="`langgraph dev`: the user a request without an API key or JWT acts as. "
        "Empty: every request needs a credential.",
    )

    @field_validator("dev_user")
    @classmethod
    def _valid_user(cls, value: str) -> str:
        return check_id("user id", value) if value else value


class ProcessServices:
    """One :class:`Services` for the process, opened lazily and closed with its last lease."""

    def __init__(self) -> None:
        self._services: Services | None = None
        self._stack: AsyncExitStack | None = None
        self._leases = 0
        self._lock: asyncio.Lock | None = None
        self.settings: StudioSettings | None = None

    def current_settings(self) -> StudioSettings:
        """The settings the services are (or will be) opened with, read once."""
        if self.settings is None:
            self.settings = StudioSettings()
        return self.settings

    async def get(self) -> Services:
        """The open services, opening them on the first call (concurrent callers wait)."""
        services = self._services
        if services is not None:
            return services
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._services is None:
                stack = AsyncExitStack()
                try:
                    self._services = await stack.enter_async_context(
                        open_services(self.current_settings())
                    )
                except BaseException:
                    await stack.aclose()
                    raise
                self._stack = stack
            return self._services

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Services]:
        """The services, kept open at least until this context exits."""
        services = await self.get()
        self._leases += 1
        try:
            yield services
        finally:
            self._leases -= 1
            if self._leases == 0:
                await self.close()

    async def close(self) -> None:
        """Close the services now (the next :meth:`get` opens them again)."""
        stack, self._stack, self._services = self._stack, None, None
        if stack is not None:
            await stack.aclose()  # releases the embedded PostgreSQL too (open_services)


SERVICES = ProcessServices()
"""The process's services. Every Studio extension point uses this one object."""


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """``checkpointer.path``: the project's Postgres saver (``make_checkpointer``), encrypted
    when ``MNEMOGRAPH_CHECKPOINT_KEY`` is set, over the process's pool."""
    async with SERVICES.lease() as services:
        if services.checkpointer is None:
            raise ConfigurationError("the Postgres checkpointer did not open")
        yield services.checkpointer


@asynccontextmanager
async def store() -> AsyncIterator[BaseStore]:
    """``store.path``: the LangGraph store over the hybrid memory, so Studio's store view and
    ``runtime.store`` see the memories ``write_memory`` stores."""
    from stores.memory.langgraph_store import HybridMemoryStore

    async with SERVICES.lease() as services:
        if services.store is None:
            raise ConfigurationError("the Postgres store did not open")
        base: BaseStore = services.store
        if services.memory is not None and not isinstance(base, HybridMemoryStore):
            base = HybridMemoryStore(base, services.memory)
        yield base


__all__ = ["SERVICES", "ProcessServices", "StudioSettings", "checkpointer", "store"]
