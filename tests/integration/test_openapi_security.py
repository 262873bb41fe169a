"""The OpenAPI document tells clients how to authenticate and what an id looks like (issue 16
item 15): `components.securitySchemes` has the bearer token and the `X-Api-Key` header, every
route behind the gate lists both, open routes list none, and ids in paths carry the id
pattern, which FastAPI enforces (a bad id is a 422 from the pattern, naming the parameter)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from mnemograph.services import Services
from mnemograph.web.middleware import is_open
from stores.ids import ID_PATTERN
from tests.servers import serve

METHODS = {"get", "put", "post", "delete", "patch"}
SCHEMES = {"HTTPBearer": {"type": "http", "scheme": "bearer"},
           "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}}  # fmt: skip
ID_PARAMS = {"thread_id", "memory_id", "checkpoint_id", "assistant_id"}


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


async def test_security_schemes_and_id_patterns(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        doc = (await http.get("/openapi.json")).json()
    schemes = doc.get("components", {}).get("securitySchemes", {})
    for name, expected in SCHEMES.items():
        assert name in schemes, schemes
        assert expected.items() <= schemes[name].items(), schemes[name]

    protected = opened = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            security = op.get("security")
            if is_open(path):
                opened += 1
                assert not security, (method, path, security)
                continue
            protected += 1
            assert security is not None, (method, path)
            assert {name for requirement in security for name in requirement} == set(SCHEMES), (
                method, path, security)  # fmt: skip
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in ID_PARAMS:
                    assert param["schema"].get("pattern") == ID_PATTERN, (method, path, param)
    assert opened >= 1 and protected >= 30, (opened, protected)
    # The REST, Agent Protocol and LangServe doors are all described as protected.
    doors = [("/api/threads/{thread_id}", "get"), ("/memories/{memory_id}", "delete"),
             ("/threads/{thread_id}/state", "get"), ("/agent/invoke", "post")]  # fmt: skip
    for path, method in doors:
        assert doc["paths"][path][method].get("security"), (method, path)
    assert re.fullmatch(ID_PATTERN[1:-1], "usr_0123abcd:x@y-z")


async def test_a_bad_id_in_a_path_is_a_422_from_the_pattern(base: str, services: Services) -> None:
    user, key = await services.user_registry().create(f"oa-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=base, timeout=30, headers={"X-Api-Key": key}) as http:
        for method, path, name in [
            ("GET", "/api/threads/bad.id", "thread_id"),
            ("DELETE", "/api/threads/-starts-with-dash", "thread_id"),
            ("DELETE", "/memories/has%20space", "memory_id"),
            ("GET", "/threads/bad.id/state", "thread_id"),
            ("POST", "/threads/bad.id/history", "thread_id"),
            ("GET", f"/threads/t-{user.user_id}/state/bad.checkpoint", "checkpoint_id"),
            ("GET", "/assistants/bad.assistant", "assistant_id"),
            ("GET", "/api/threads/" + "x" * 129, "thread_id"),
        ]:
            res = await http.request(method, path, json={} if method == "POST" else None)
            assert res.status_code == 422, (method, path, res.text)
            problems = res.json()["detail"]
            assert [p["loc"] for p in problems] == [["path", name]], (method, path, problems)
            assert problems[0]["type"] == "string_pattern_mismatch", problems
            assert "bad" not in res.text and "space" not in res.text  # no echo of the input
