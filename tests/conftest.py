"""Session fixtures: real services, started once. A service that cannot start fails the run;
nothing here skips."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mnemograph.services import Services, open_services
from stores.postgres.embedded import start_embedded_postgres
from stores.settings import Settings

pytest_plugins = ["tests.fixtures_graph", "tests.fixtures_memory"]  # issue 4: memory fixtures

SYSTEM_PG_URL = os.environ.get(
    "MNEMOGRAPH_TEST_SYSTEM_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# Keep test runs from ever reading a developer's own configuration.
for _var in ("DATABASE_URL", "NEO4J_URI", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
    os.environ.pop(_var, None)


REPORT = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()
"""Figures end-to-end tests measured, printed in the terminal summary of every run."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures the acceptance tests recorded, pass or fail."""
    for title, figures in terminalreporter.config.stash.get(REPORT, []):
        terminalreporter.write_sep("-", title)
        for key, value in figures.items():
            terminalreporter.write_line(f"{key}: {value}")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mnemograph")


@pytest.fixture(scope="session")
def pg_url(data_dir: Path) -> Iterator[str]:
    """The embedded PostgreSQL 18 + pgvector, the same one `mnemograph` starts by default."""
    embedded = start_embedded_postgres(data_dir / "pg", keep_running=False)
    yield embedded.url
    embedded.server.cleanup()


@pytest.fixture(scope="session")
def system_pg_url() -> str:
    """The machine's PostgreSQL 15 (no pgvector); the DATABASE_URL path is tested against it."""
    with psycopg.connect(SYSTEM_PG_URL, connect_timeout=5) as conn:
        conn.execute("SELECT 1")
    return SYSTEM_PG_URL


@pytest.fixture(scope="session")
def settings(data_dir: Path, pg_url: str) -> Settings:
    return Settings(data_dir=data_dir, database_url=pg_url, model="fake")  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with open_services(settings) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _reset_chat_model(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests swap the shared services' model (stubs, scripted fakes); put the echo model back
    so no test inherits another's, e.g. a stub whose HTTP server is already gone."""
    yield
    if "services" in request.fixturenames:
        from stores.models.fake_llm import EchoChatModel

        request.getfixturevalue("services").set_chat_model(EchoChatModel())


@pytest.fixture
def uid() -> str:
    """A fresh user id, so tests never see each other's data."""
    return f"u-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tid() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def cli_env(pg: str, data_dir: Path, **extra: Any) -> dict[str, str]:
    """Environment for a `mnemograph` subprocess pointed at the test database."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "NEO4J_URI")
    }
    env.update(
        DATABASE_URL=pg,
        MNEMOGRAPH_DATA_DIR=str(data_dir),
        MNEMOGRAPH_MODEL="fake",
        MNEMOGRAPH_EMBEDDINGS="local",
        # Each call starts and stops its own services unless a test asks for the keeper.
        MNEMOGRAPH_KEEP_WARM_S="0",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env
