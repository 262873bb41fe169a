"""LangGraph's checkpoint saver conformance suite (``langgraph-checkpoint-conformance``) against
the savers ``make_checkpointer`` builds: the pooled saver and the encrypted one.

Each saver runs in a database of its own on the session's embedded PostgreSQL, created and
dropped by the suite's lifespan, so the suite's threads never meet other tests' checkpoints.
The suite runs once per saver; every capability is one test item here. The base
capabilities and ``prune`` (which retention builds on) must be implemented and pass; an
optional capability a saver does not implement is reported as skipped, as the suite reports
it, and one it implements must pass.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES, Capability
from langgraph.checkpoint.conformance.report import CapabilityReport
from psycopg import sql

from stores.postgres.savers import (
    EncryptedPostgresSaver,
    PooledPostgresSaver,
    make_checkpointer,
    open_pool,
)

SAVERS: dict[str, tuple[str | None, type[BaseCheckpointSaver[Any]]]] = {
    "pooled": (None, PooledPostgresSaver),
    "encrypted": ("conformance-test-key", EncryptedPostgresSaver),
}
"""Saver kind -> (``encryption_key`` for ``make_checkpointer``, the class it must build)."""

REQUIRED = frozenset({*BASE_CAPABILITIES, Capability.PRUNE})
"""Capabilities the savers must implement and pass (``prune``: retention relies on it)."""


def _database_url(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _admin(pg_url: str, statement: sql.Composed) -> None:
    conn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _registered(pg_url: str, kind: str) -> Any:
    """The saver ``kind`` registered with the suite: a fresh saver per capability on one pool
    to a database of its own, made (tables included) and dropped by the lifespan."""
    key, cls = SAVERS[kind]
    name = f"mnemo_conformance_{kind}_{uuid.uuid4().hex[:8]}"
    pools: list[Any] = []

    async def lifespan() -> AsyncGenerator[None, None]:
        await _admin(pg_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            pool = await open_pool(_database_url(pg_url, name), max_size=4)
            pools.append(pool)
            try:
                await make_checkpointer(pool, encryption_key=key, create=True)
                yield
            finally:
                await pool.close()
        finally:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            await _admin(pg_url, drop.format(sql.Identifier(name)))

    async def saver() -> AsyncIterator[BaseCheckpointSaver[Any]]:
        made = await make_checkpointer(pools[-1], encryption_key=key, create=False)
        assert type(made) is cls, f"make_checkpointer built {type(made).__name__}"
        yield made

    decorate: Callable[[Any], Any] = checkpointer_test(name=cls.__name__, lifespan=lifespan)
    return decorate(saver)


@pytest.fixture(scope="module")
async def reports(pg_url: str) -> dict[str, CapabilityReport]:
    """One full run of the suite per saver (every capability, auto-detected)."""
    out: dict[str, CapabilityReport] = {}
    for kind in SAVERS:
        out[kind] = await validate(_registered(pg_url, kind))
        out[kind].print_report()  # shown with -s, or on failure
    return out


@pytest.mark.parametrize("capability", [c.value for c in Capability])
@pytest.mark.parametrize("kind", list(SAVERS))
def test_capability(reports: dict[str, CapabilityReport], kind: str, capability: str) -> None:
    result = reports[kind].results[capability]
    method = f"a{capability}"  # the saver method the suite detects the capability by
    saver = SAVERS[kind][1].__name__
    if not result.detected:
        assert Capability(capability) not in REQUIRED, (
            f"{saver} does not implement {method}, which {capability!r} needs"
        )
        pytest.skip(f"the suite skipped {capability!r}: {saver} does not implement {method}")
    failures = "\n".join(result.failures)
    assert result.passed is True, (
        f"{saver}: {result.tests_failed} of {result.tests_passed + result.tests_failed} "
        f"{capability!r} conformance tests failed:\n{failures}"
    )
    assert result.tests_passed > 0
