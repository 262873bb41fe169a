"""Servers for tests that talk to Mnemograph as its users' clients do: the production app
under uvicorn on the test's own event loop (the services' pools live on it), or
``mnemograph serve`` as a subprocess. Every test module starts servers through here, so
start-up, readiness and shutdown are decided once."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from mnemograph.services import Services
from server import create_app

ROOT = Path(__file__).resolve().parents[1]
START_S = 180.0
"""A cold `mnemograph serve` (initdb, JVM) on a busy 2-core box."""


@asynccontextmanager
async def serve_app(app: FastAPI, *, per_user_limit: bool = False) -> AsyncIterator[str]:
    """``app`` under uvicorn on a socket bound up front (no free-port race); yields its URL.

    The per-user rate limit is off unless asked for: tests send bursts on purpose.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), task.result()
        await asyncio.sleep(0.05)
    if not per_user_limit:
        app.state.limiter.per_min = 0
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)
        sock.close()


@asynccontextmanager
async def serve(services: Services) -> AsyncIterator[str]:
    """The production app on ``services``, served on this loop."""
    async with serve_app(create_app(services)) as url:
        yield url


async def new_key(services: Services, prefix: str = "ap") -> tuple[str, str]:
    """A new account and its API key: (user id, key)."""
    user, key = await services.user_registry().create(f"{prefix}-{uuid.uuid4().hex[:8]}")
    return user.user_id, key


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 60.0) -> None:
    """SIGTERM, as an operator stops a server; SIGKILL if it does not exit in time."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@asynccontextmanager
async def serve_process(
    env: dict[str, str], log: Path, *args: str, start_s: float = START_S
) -> AsyncIterator[str]:
    """`mnemograph serve` (plus ``args``) in a subprocess with ``env``; yields its URL once
    ``/health`` answers 200, stops it with SIGTERM after."""
    port = free_port()
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mnemograph.cli", "serve", "--port", str(port), *args,
            cwd=ROOT, stdout=sink, stderr=sink, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_s
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                assert proc.returncode is None, tail(log)
                try:
                    if (await http.get(f"{url}/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, tail(log)
                await asyncio.sleep(0.5)
        yield url
    finally:
        await stop_process(proc)
