"""Hostile request bodies against a real `mnemograph serve` app under uvicorn on 127.0.0.1
(issue 16, item 2): the credential is decided from the headers before any body byte is read,
on every route (REST, the Agent Protocol, LangServe's ``/agent/*``, mounted apps); the size
limit counts bytes as they arrive, so chunked bodies are cut at 256 KB with a 413; no 4xx
echoes the input; no body gives a 500.

Chunked uploads go over a raw socket, which sends the body piece by piece while it watches
for the answer, so a server that answers early is seen answering early.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.responses import PlainTextResponse

from mnemograph.services import Services
from server import create_app
from tests.conftest import REPORT
from tests.servers import serve

MB = 1024 * 1024
MARKER = "EchoMarker"


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


@pytest.fixture
async def key(services: Services) -> str:
    _user, key = await services.user_registry().create(f"hb-{uuid.uuid4().hex[:8]}")
    return key


def _rss_mb() -> float:
    """This process's resident memory (the server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "content-length" in fields:
        return status, await reader.readexactly(int(fields["content-length"]))
    body = b""
    while True:  # chunked answer
        size = int((await reader.readline()).strip() or b"0", 16)
        if size == 0:
            return status, body
        body += await reader.readexactly(size)
        await reader.readline()


async def chunked_post(
    base: str,
    path: str,
    *,
    total: int,
    headers: dict[str, str] | None = None,
    first: bytes = b"[",
    piece: bytes = b"{}," * 5000,
    last: bytes = b"{}]",
    wait_s: float = 60,
) -> tuple[int, bytes, int, float]:
    """POST a chunked body of about ``total`` bytes, one piece at a time, and watch for the
    answer meanwhile. Returns (status, body, bytes sent when it came, seconds taken)."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: chunked\r\n{extra}\r\n".encode()
    )
    t0 = time.perf_counter()
    answer = asyncio.create_task(_read_answer(reader))
    sent = 0

    async def send(data: bytes) -> None:
        nonlocal sent
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.wait({drained, answer}, return_when=asyncio.FIRST_COMPLETED)
        if not drained.done():
            drained.cancel()
        sent += len(data)

    try:
        await send(first)
        while sent + len(piece) + len(last) <= total and not answer.done():
            await send(piece)
        if not answer.done():
            await send(last)
            writer.write(b"0\r\n\r\n")
    except (ConnectionError, RuntimeError):
        pass  # the server closed the connection after answering
    try:
        status, body = await asyncio.wait_for(answer, wait_s)
    finally:
        writer.close()
    return status, body, sent, time.perf_counter() - t0


ROUTES = ["/agent/invoke", "/agent/stream", "/agent/batch", "/threads", "/api/threads",
          "/threads/x/runs/wait", "/store/items/search", "/memories", "/v1/chat/completions",
          "/mcp"]  # fmt: skip


async def test_unauthenticated_chunked_bodies_are_refused_from_the_headers(
    base: str, request: pytest.FixtureRequest
) -> None:
    """No key, or a wrong one: 401 before the body, on every door. Measured: a 20 MB body
    of tiny objects, its time and the server's memory (the probe saw 305 -> 830 MB)."""
    for path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer mg_wrong"}):
            status, body, sent, _s = await chunked_post(base, path, total=MB, headers=headers)
            assert status == 401, (path, headers, status, body[:200])
            assert sent < MB, (path, "the server read the whole body before answering")
    rss0 = _rss_mb()
    status, _body, sent, took = await chunked_post(base, "/agent/invoke", total=20 * MB)
    rss1 = _rss_mb()
    assert status == 401 and sent < 20 * MB
    async with httpx.AsyncClient(timeout=10) as http:
        t0 = time.perf_counter()
        assert (await http.get(f"{base}/health")).status_code == 200
        health_ms = (time.perf_counter() - t0) * 1000
    figures = {
        "answered": f"{status} after {sent / MB:.2f} MB sent, {took * 1000:.0f} ms",
        "server RSS": f"{rss0:.0f} -> {rss1:.0f} MB",
        "/health after": f"{health_ms:.0f} ms",
    }
    request.config.stash.setdefault(REPORT, []).append(("unauthenticated 20 MB body", figures))
    assert rss1 - rss0 < 50


async def test_not_json_without_a_key_is_401(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for path in ROUTES:
            res = await http.post(path, content=b"{not json")
            assert res.status_code == 401, (path, res.status_code, res.text)
        res = await http.get("/agent/input_schema")
        assert res.status_code == 401, res.text
        # the OpenAI door's early answers come in OpenAI's shape
        res = await http.post("/v1/chat/completions", content=b"{not json")
        assert res.status_code == 401, res.text
        assert res.json()["error"]["code"] == "invalid_api_key", res.text
        for path in ("/health", "/openapi.json", "/docs", "/", "/inspector/inspector.js"):
            assert (await http.get(path)).status_code == 200, path


async def test_chunked_bodies_over_the_limit_are_413_with_a_valid_key(base: str, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    for path in ("/agent/invoke", "/threads", "/api/threads"):
        status, body, sent, _s = await chunked_post(base, path, total=300 * 1024, headers=auth)
        assert status == 413, (path, status, body[:300])
        assert "bytes" in json.loads(body)["detail"]
    status, body, sent, _s = await chunked_post(base, "/agent/invoke", total=20 * MB, headers=auth)
    assert status == 413 and sent < 8 * MB, (status, sent)  # socket buffers, not the server
    # a small chunked body still works
    thread = f"hb-{uuid.uuid4().hex[:8]}"
    small = json.dumps({
        "input": {"messages": [{"type": "human", "content": "chunked hello"}]},
        "config": {"configurable": {"thread_id": thread}},
    }).encode()  # fmt: skip
    status, body, _sent, _s = await chunked_post(
        base, "/agent/invoke", total=len(small), headers=auth,
        first=small[:10], piece=small[10:20], last=small[20:],
    )  # fmt: skip
    assert status == 200, body[:300]
    assert json.loads(body)["output"]["messages"][-1]["content"] == "echo: chunked hello"


def _echo_cases() -> list[tuple[str, str, Any]]:
    big = MARKER * 2000  # 20 kB of it
    agent = {"input": {"messages": [{"type": "human", "content": "hi"}]},
             "config": {"configurable": {"thread_id": big}}}  # fmt: skip
    return [
        ("POST", "/api/threads", {"thread_id": "ok-1", "title": big}),
        ("POST", "/api/threads", {"thread_id": big}),
        ("POST", "/api/threads", {"thread_id": "ok-1", big: 1}),
        ("POST", "/threads", {"thread_id": big}),
        ("POST", "/threads", {"metadata": {"k": json.loads("[" * 30 + f'"{big}"' + "]" * 30)}}),
        ("POST", "/threads", {"if_exists": big}),
        ("POST", "/agent/invoke", agent),
        ("POST", "/agent/invoke", {"input": big}),
        (
            "POST",
            "/agent/invoke",
            {
                "input": {"messages": [{"type": big, "content": "x"}]},
                "config": {"configurable": {"thread_id": "t-1"}},
            },
        ),
        ("POST", "/agent/batch", {"inputs": big}),
        ("POST", "/threads/search", {"limit": big}),
        ("POST", "/store/items/search", {"namespace_prefix": big}),
        ("PUT", "/store/items", {"namespace": [big], "key": big, "value": big}),
        ("POST", "/runs/wait", {"assistant_id": big, "input": big}),
        ("POST", "/memories", {"text": "x", "kind": big}),
    ]


async def test_4xx_answers_never_echo_the_input(base: str, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=auth) as http:
        failures = []
        for method, path, body in _echo_cases():
            res = await http.request(method, path, json=body)
            if not 400 <= res.status_code < 500 or MARKER in res.text:
                failures.append((method, path, res.status_code, res.text[:300]))
        assert not failures, failures


def _everywhere(text: str) -> bytes:
    """A body with ``text`` (raw JSON string content) in every field some route reads."""
    fields = ", ".join(
        f'"{k}": "{text}"' for k in ("thread_id", "title", "text", "key", "assistant_id")
    )
    return (
        f'{{"input": {{"messages": [{{"type": "human", "content": "{text}"}}]}}, '
        f'"config": {{"configurable": {{"thread_id": "hb-{uuid.uuid4().hex[:6]}"}}}}, '
        f'"metadata": {{"k": "{text}"}}, "namespace": ["{text}"], "value": {{"v": "{text}"}}, '
        f"{fields}}}"
    ).encode()


def _hostile_bodies() -> list[bytes]:
    return [
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting: a RecursionError in the parser
        b'{"input": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        b'{"input": ' + b"[" * 900 + b"]" * 900 + b', "config": {}}',
        b'{"thread_id": "' + b"1" * 10 + b'", "title": ' + b"9" * 5000 + b"}",  # huge int
        b'{"thread_id": "t-x", "title": "\\ud800"}',  # a lone surrogate
        b'{"thread_id": "t-\\u0000"}',
        b"\xff\xfe not utf-8",
        b"{not json",
        b"",
        b"null",
        b'"just a string"',
        b"1e999999",
        *(_everywhere(text) for text in ("\\ud800", "a\\u0000b", "\\udfff\\ud800", "\\u0007")),
    ]


async def test_no_body_gives_a_500(base: str, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=auth) as http:
        failures = []
        for body in _hostile_bodies():
            for path in [*ROUTES, "/threads/search", "/runs/wait", "/agent/stream_events"]:
                res = await http.post(path, content=body)
                if res.status_code >= 500 or "Traceback" in res.text:
                    failures.append((path, body[:40], res.status_code, res.text[:200]))
        assert not failures, failures
        thread = f"hb-{uuid.uuid4().hex[:8]}"
        res = await http.post("/agent/invoke", json={
            "input": {"messages": [{"type": "human", "content": "still here"}]},
            "config": {"configurable": {"thread_id": thread}},
        })  # fmt: skip
        assert res.status_code == 200, res.text


async def test_mounted_apps_are_behind_the_same_gate(services: Services) -> None:
    """A sub-app mounted on the app (as ``/mcp`` is) gets no request without a key, and
    its chunked bodies are counted too."""
    import socket

    import uvicorn

    seen: list[int] = []

    async def probe(scope: Any, receive: Any, send: Any) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen.append(size)
        await PlainTextResponse(f"read {size}")(scope, receive, send)

    app = create_app(services)
    app.mount("/probe", probe)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        _user, key = await services.user_registry().create(f"hb-{uuid.uuid4().hex[:8]}")
        status, _b, sent, _s = await chunked_post(base, "/probe/x", total=MB)
        assert status == 401 and sent < MB and seen == []
        auth = {"Authorization": f"Bearer {key}"}
        status, _b, sent, _s = await chunked_post(base, "/probe/x", total=MB, headers=auth)
        assert status == 413 and seen == []
        status, body, _sent, _s = await chunked_post(
            base, "/probe/x", total=1000, headers=auth, piece=b"{},"
        )
        assert status == 200 and body.startswith(b"read "), body
        assert seen == [int(body.split()[1])]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)
        sock.close()
