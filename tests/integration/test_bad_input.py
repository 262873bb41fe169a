"""Hostile and malformed input: every kind gets a 4xx with a message, nothing is executed,
the server keeps serving; a schemathesis fuzz of the OpenAPI finds no 5xx; per-user 429."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from mnemograph.services import Services
from mnemograph.validation import MAX_MESSAGE_CHARS
from mnemograph.web.deps import RateLimiter
from mnemograph.web.limits import AddressLimits
from mnemograph.web.middleware import MAX_BODY_BYTES
from server import create_app
from stores.models.fake_llm import EchoChatModel

FUZZ_EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
async def app(services: Services) -> AsyncIterator[FastAPI]:
    application = create_app(dataclasses.replace(services, _chat_model=EchoChatModel()))
    async with application.router.lifespan_context(application):
        application.state.limiter.per_min = 0
        # The fuzz sends hundreds of keyless requests from one address on purpose.
        application.state.address_limits = AddressLimits(0, 0)
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as c:
        yield c


@pytest.fixture
async def headers(app: FastAPI) -> dict[str, str]:
    _user, key = await app.state.users.create(f"bad-{uuid.uuid4().hex[:8]}")
    return {"Authorization": f"Bearer {key}"}


def _agent(thread: str, content: Any) -> dict[str, Any]:
    return {
        "input": {"messages": [{"type": "human", "content": content}]},
        "config": {"configurable": {"thread_id": thread}},
    }


async def _still_serving(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    thread = f"ok-{uuid.uuid4().hex[:8]}"
    res = await client.post("/agent/invoke", json=_agent(thread, "are you there"), headers=headers)
    assert res.status_code == 200, res.text
    assert res.json()["output"]["messages"][-1]["content"] == "echo: are you there"


def _clear_4xx(res: httpx.Response, case: str) -> None:
    assert 400 <= res.status_code < 500, (case, res.status_code, res.text)
    detail = res.json().get("detail")
    assert detail, (case, res.text)


async def test_bad_input_gets_clear_4xx(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    thread = f"bad-{uuid.uuid4().hex[:8]}"
    json_hdr = {**headers, "Content-Type": "application/json"}
    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("oversized body", "POST", "/agent/invoke",
         {"content": b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}", "headers": json_hdr}),
        ("oversized message", "POST", "/agent/invoke",
         {"json": _agent(thread, "x" * (MAX_MESSAGE_CHARS + 1))}),
        ("invalid utf-8 body", "POST", "/agent/invoke",
         {"content": b'{"input": {"messages": [{"type": "human", "content": "\xff\xfe"}]}}',
          "headers": json_hdr}),
        ("invalid utf-8 thread body", "POST", "/threads",
         {"content": b'{"thread_id": "\xc3\x28"}', "headers": json_hdr}),
        ("control characters", "POST", "/agent/invoke",
         {"json": _agent(thread, "nul\x00 bell\x07")}),
        ("control characters in title", "POST", "/threads",
         {"json": {"thread_id": thread, "title": "a\x1bb"}}),
        ("malformed json", "POST", "/agent/invoke",
         {"content": b"{\"input\": [", "headers": json_hdr}),
        ("malformed json threads", "POST", "/threads", {"content": b"{nope", "headers": json_hdr}),
        ("unknown field", "POST", "/threads", {"json": {"thread_id": thread, "owner": "root"}}),
        ("unknown input field", "POST", "/agent/invoke",
         {"json": {"input": {"messages": [{"type": "human", "content": "hi"}], "user_id": "x"},
                   "config": {"configurable": {"thread_id": thread}}}}),
        ("non-string content", "POST", "/agent/invoke", {"json": _agent(thread, {"$ne": 1})}),
        ("memory k out of range", "GET", "/memories?k=100000", {}),
    ]  # fmt: skip
    bad_ids = ["../../etc/passwd", "a/b", "x'; DROP TABLE checkpoints; --", "a b", "x" * 200,
               "%2e%2e%2fadmin", "n) DETACH DELETE n //", "<script>", "a.b", "-lead"]  # fmt: skip
    for bad in bad_ids:
        cases.append((f"thread id {bad!r}", "POST", "/threads", {"json": {"thread_id": bad}}))
        cases.append(
            (f"agent thread {bad!r}", "POST", "/agent/invoke", {"json": _agent(bad, "hi")})
        )
        safe = httpx.URL("/threads/").join(bad.replace("/", "%2F").replace("?", "%3F")).path
        cases.append((f"get {bad!r}", "GET", safe, {}))
        cases.append((f"delete memory {bad!r}", "DELETE",
                      "/memories/" + bad.replace("/", "%2F"), {}))  # fmt: skip
    for name, method, path, kwargs in cases:
        hdrs = kwargs.pop("headers", headers)
        res = await client.request(method, path, headers=hdrs, **kwargs)
        if res.status_code == 307 and "/" in name:
            continue  # FastAPI's trailing-slash redirect: no route was reached
        if res.status_code == 404 and method in ("GET", "DELETE"):
            continue  # an id that never matches a route or a row is a clear 404 too
        _clear_4xx(res, name)
    await _still_serving(client, headers)


async def test_injection_text_is_stored_verbatim(
    client: httpx.AsyncClient, headers: dict[str, str], services: Services
) -> None:
    thread = f"inj-{uuid.uuid4().hex[:8]}"
    payloads = [
        "'); DROP TABLE checkpoints; DROP TABLE store; --",
        "Robert'); DELETE FROM mnemo_users WHERE ('1'='1",
        "MATCH (n) DETACH DELETE n RETURN 1 // }) RETURN n",
        "${jndi:ldap://x} {{7*7}} <img src=x onerror=alert(1)> \\x00 %s %n",
    ]
    assert services.pool is not None
    async with services.pool.connection() as conn:
        users_before = await (
            await conn.execute("SELECT count(*) AS n FROM mnemo_users")
        ).fetchone()
    for text in payloads:
        res = await client.post("/agent/invoke", json=_agent(thread, text), headers=headers)
        assert res.status_code == 200, res.text
        assert res.json()["output"]["messages"][-1]["content"] == "echo: " + " ".join(text.split())
    detail = (await client.get(f"/api/threads/{thread}", headers=headers)).json()
    humans = [m["content"] for m in detail["messages"] if m["type"] == "human"]
    assert humans == payloads  # stored as data, byte for byte
    async with services.pool.connection() as conn:
        for table in ("checkpoints", "store", "mnemo_users", "mnemo_threads"):
            await conn.execute(f"SELECT 1 FROM {table} LIMIT 1")  # still there
        users_after = await (await conn.execute("SELECT count(*) AS n FROM mnemo_users")).fetchone()
    assert users_after == users_before
    await _still_serving(client, headers)


async def test_rate_limit_answers_429(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    now = [1000.0]
    app.state.limiter = RateLimiter(5, clock=lambda: now[0])
    try:
        codes = [(await client.get("/threads", headers=headers)).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2
        res = await client.get("/threads", headers=headers)
        assert res.status_code == 429 and "rate limit" in res.json()["detail"]
        assert res.headers.get("retry-after")
        # Another user is not affected, and the bucket refills with time.
        _user, key = await app.state.users.create(f"rl-{uuid.uuid4().hex[:8]}")
        other = {"Authorization": f"Bearer {key}"}
        assert (await client.get("/threads", headers=other)).status_code == 200
        res = await client.post("/agent/invoke", json=_agent("rl-x", "hi"), headers=headers)
        assert res.status_code == 429
        now[0] += 60
        assert (await client.get("/threads", headers=headers)).status_code == 200
    finally:
        app.state.limiter = RateLimiter(0)


async def test_schemathesis_finds_no_server_errors(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    cases: list[Any] = []
    for operation in operations:
        if operation.path in ("/me",) and operation.method.upper() == "DELETE":
            continue  # would delete the fuzzing user halfway; covered by test_gdpr

        @hsettings(max_examples=FUZZ_EXAMPLES_PER_OPERATION, database=None, deadline=None,
                   suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def collect(case: Any) -> None:
            cases.append(case)

        collect()
    errors: list[str] = []
    for i, case in enumerate(cases):
        kwargs = case.as_transport_kwargs(base_url="http://t")
        req_headers = {k: v for k, v in (kwargs.get("headers") or {}).items()
                       if k.lower() not in ("content-length", "host")}  # fmt: skip
        if any(not str(v).isascii() for v in req_headers.values()):
            continue  # HTTP clients refuse such headers before sending (X-Thread-Id: 'Å')
        if i % 4:  # most cases authenticated, so they reach the handlers
            req_headers.update(headers)
        res = await client.request(
            kwargs["method"], kwargs["url"], headers=req_headers, params=kwargs.get("params"),
            json=kwargs.get("json"), content=kwargs.get("data") if "json" not in kwargs else None,
        )  # fmt: skip
        if res.status_code >= 500:
            errors.append(
                f"{kwargs['method']} {kwargs['url']} -> {res.status_code} {res.text[:200]}"
            )
    print(f"schemathesis: {len(cases)} cases over {len(operations)} operations, "
          f"{len(errors)} server errors")  # fmt: skip
    assert len(cases) >= len(operations)
    assert not errors, errors[:5]
    await _still_serving(client, headers)
