"""The MCP memory server through the `mcp` client SDK (2.x), over both transports: streamable
HTTP at `/mcp` on the production app (in-process uvicorn on the session's services, keys from
the user registry) and stdio, a `mnemograph mcp --user U` subprocess on the session's
database. Tools listed, a memory added then found, two users kept apart, bad input refused as
a tool error with nothing written, 401 without a key, the recall a turn would make, facts,
the profile resource and a chat turn."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import psycopg
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, TextResourceContents

from graph.facts import Triple
from mnemograph.mcp.server import tool_errors
from mnemograph.services import Services
from tests.conftest import cli_env
from tests.servers import new_key, serve, serve_process
from tests.threads import stored_messages

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {
    "search_memories", "add_memory", "delete_memory", "current_facts", "fact_history",
    "recall", "chat",
}  # fmt: skip


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


@asynccontextmanager
async def http_client(base: str, key: str) -> AsyncIterator[Client]:
    """An MCP client on `/mcp` that sends `key` as a bearer token."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    async with http, Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
        yield client


def data(result: CallToolResult) -> dict[str, Any]:
    """A successful call's structured answer (and the same JSON in its text content)."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict), result
    text = result.content[0]
    assert isinstance(text, TextContent) and json.loads(text.text) == result.structured_content
    return result.structured_content


def refusal(result: CallToolResult) -> str:
    """A tool error's message."""
    assert result.is_error, result
    text = result.content[0]
    assert isinstance(text, TextContent)
    return text.text


async def test_http_tools_add_search_delete_and_two_users(base: str, services: Services) -> None:
    alice, alice_key = await new_key(services)
    bob, bob_key = await new_key(services)
    async with http_client(base, alice_key) as a, http_client(base, bob_key) as b:
        listed = await a.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        schema = next(t for t in listed.tools if t.name == "add_memory").input_schema
        assert schema["properties"]["kind"]["enum"] == ["fact", "preference", "semantic", "turn"]

        added = data(await a.call_tool(
            "add_memory", {"text": "My cat is called Miso", "kind": "fact", "importance": 0.8}
        ))  # fmt: skip
        assert added["outcome"] == "added" and added["memory"]["text"] == "My cat is called Miso"
        memory_id = added["memory"]["id"]
        again = data(await a.call_tool("add_memory", {"text": "My cat is called Miso"}))
        assert again["outcome"] == "merged" and again["memory"]["id"] == memory_id
        found = data(await a.call_tool("search_memories", {"query": "name of my cat", "k": 5}))
        assert found["memories"][0]["id"] == memory_id and found["memories"][0]["score"] > 0
        assert services.memory is not None
        direct = await services.memory.search(alice, "name of my cat", 5)
        assert [m["id"] for m in found["memories"]] == [h.item.id for h in direct]

        # Bob sees none of it, and cannot delete it by its id.
        assert data(await b.call_tool("search_memories", {"query": "cat Miso"}))["memories"] == []
        assert "not found" in refusal(await b.call_tool("delete_memory", {"id": memory_id}))
        assert await services.memory.count(alice) == 1
        assert await services.memory.count(bob) == 0

        assert data(await a.call_tool("delete_memory", {"id": memory_id})) == {"deleted": memory_id}
        assert data(await a.call_tool("search_memories", {"query": "cat"}))["memories"] == []
        assert "not found" in refusal(await a.call_tool("delete_memory", {"id": memory_id}))


async def test_bad_input_is_a_tool_error_and_nothing_is_written(
    base: str, services: Services
) -> None:
    user, key = await new_key(services)
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("add_memory", {"text": "I like tea", "importance": 2}, "importance"),
        ("add_memory", {"text": "I like tea", "kind": "gossip"}, "kind"),
        ("add_memory", {"text": "   "}, "memory text is empty"),
        ("add_memory", {"text": "nul \x00 inside"}, "NUL"),
        ("add_memory", {"text": "x" * 9000}, "text"),
        ("add_memory", {}, "text"),
        ("search_memories", {"query": "tea", "k": 0}, "k"),
        ("search_memories", {"query": ""}, "query"),
        ("delete_memory", {"id": "../etc/passwd"}, "invalid memory id"),
        ("current_facts", {"entity": "..."}, "names nothing"),
        ("current_facts", {"limit": 10_000}, "limit"),
        ("recall", {"query": "bell \x07 here"}, "control characters"),
        ("chat", {"thread_id": "has spaces", "message": "hi"}, "thread_id"),
        ("no_such_tool", {}, "no_such_tool"),
    ]
    async with http_client(base, key) as client:
        for name, arguments, says in bad:
            message = refusal(await client.call_tool(name, arguments))
            assert says in message, (name, arguments, message)
    assert services.memory is not None and await services.memory.count(user) == 0
    assert await services.thread_registry().list(user) == []


async def test_mcp_over_http_needs_a_key(base: str, services: Services) -> None:
    probe = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(base_url=base) as http:
        for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"X-Api-Key": "nope"}):
            response = await http.post("/mcp", json=probe, headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert "API key" in response.json()["detail"]
        _user, key = await new_key(services)
        ok = await http.post("/mcp", json=probe, headers={"X-Api-Key": key})
        assert ok.status_code not in (401, 404), ok.text  # the transport itself answers
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in its own errors
        async with http_client(base, "wrong-key") as client:
            await client.list_tools()

    # The 401 comes before any body byte is read: headers announce a body that never comes.
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /mcp HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status.startswith(b"HTTP/1.1 401"), status


async def test_recall_facts_profile_and_chat_over_http(base: str, services: Services) -> None:
    alice, alice_key = await new_key(services)
    _bob, bob_key = await new_key(services)
    assert services.facts is not None and services.memory is not None
    now_ms = int(time.time() * 1000)
    lisbon = Triple(subject="I", predicate="lives_in", object="Lisbon", confidence=0.9)
    acme = Triple(subject="I", predicate="works_at", object="Acme", confidence=0.9)
    porto = Triple(subject="I", predicate="lives_in", object="Porto", confidence=0.9)
    for triples, at_ms in (([lisbon, acme], now_ms), ([porto], now_ms + 1000)):
        await services.facts.write(alice, triples, thread_id=None, message_id=None, at_ms=at_ms)
    await services.memory.add(alice, "I prefer window seats on trains", kind="preference")
    async with http_client(base, alice_key) as a, http_client(base, bob_key) as b:
        current = data(await a.call_tool("current_facts", {}))
        assert {(f["predicate"], f["object"]) for f in current["facts"]} == {
            ("lives_in", "Porto"), ("works_at", "Acme"),
        }  # fmt: skip
        mine = data(await a.call_tool("current_facts", {"entity": "me"}))
        assert mine["entity"] == "user" and len(mine["facts"]) == 2
        history = data(await a.call_tool("fact_history", {"entity": "Lisbon"}))
        [old] = history["facts"]
        assert old["object"] == "Lisbon" and old["invalid_at"] is not None
        assert len(data(await a.call_tool("fact_history", {}))["facts"]) == 3
        cut = data(await a.call_tool("fact_history", {"limit": 2}))
        assert len(cut["facts"]) == 2 and cut["truncated"] is True
        assert data(await b.call_tool("current_facts", {}))["facts"] == []

        read = await a.read_resource("mnemograph://facts/user")
        [contents] = read.contents
        assert isinstance(contents, TextResourceContents)
        assert contents.mime_type == "application/json"
        profile = json.loads(contents.text)
        assert {f["object"] for f in profile["facts"]} == {"Porto", "Acme"}
        bobs = await b.read_resource("mnemograph://facts/user")
        assert isinstance(bobs.contents[0], TextResourceContents)
        assert json.loads(bobs.contents[0].text)["facts"] == []

        text = "Where do I live, and what seat do I like on trains?"
        recalled = data(await a.call_tool("recall", {"query": text}))
        # The turn's own recall: the store's ranking within the turn's default budgets.
        ranked = await services.memory.recall(alice, text, k=5, token_budget=400)
        assert [m["source"] for m in recalled["memories"]] == [r["source"] for r in ranked]
        assert any("window seats" in m["text"] for m in recalled["memories"])
        assert any("Porto" in f["text"] for f in recalled["facts"])
        assert not any("Lisbon" in f["text"] for f in recalled["facts"])
        assert recalled["budgets"] == {
            "memories": 5, "memory_tokens": 400, "fact_tokens": 300, "hops": 1,
        }  # fmt: skip
        assert data(await b.call_tool("recall", {"query": text})) == {
            **recalled, "memories": [], "facts": [],
        }  # fmt: skip

        thread = f"mcp-{uuid.uuid4().hex[:8]}"
        reply = data(await a.call_tool("chat", {"thread_id": thread, "message": "hello there"}))
        assert reply == {"thread_id": thread, "reply": "echo: hello there"}
        # Thread ids are per user: Bob's chat on Alice's id is a thread of his own.
        theirs = data(await b.call_tool("chat", {"thread_id": thread, "message": "let me in"}))
        assert theirs == {"thread_id": thread, "reply": "echo: let me in"}
        assert [t.thread_id for t in await services.thread_registry().list(alice)] == [thread]
        assert [m for _, m in await stored_messages(services, alice, thread)] == [
            "hello there", "echo: hello there"]  # fmt: skip


async def test_stdio_server_is_a_subprocess_of_one_user(
    pg_url: str, data_dir: Path, services: Services
) -> None:
    user = f"u-{uuid.uuid4().hex[:10]}"
    other, _key = await new_key(services)
    assert services.memory is not None
    hidden = await services.memory.add(other, "Another user's secret: the vault code is 4711")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mnemograph.cli", "mcp", "--user", user],
        env=cli_env(pg_url, data_dir),
        cwd=str(ROOT),
    )
    started = time.perf_counter()
    async with Client(params, read_timeout_seconds=180) as client:
        listed = await client.list_tools()
        ready_s = time.perf_counter() - started
        assert {t.name for t in listed.tools} == TOOLS
        added = data(await client.call_tool(
            "add_memory", {"text": "I am learning the cello", "kind": "fact"}
        ))  # fmt: skip
        found = data(await client.call_tool("search_memories", {"query": "which instrument"}))
        assert [m["id"] for m in found["memories"]] == [added["memory"]["id"]]
        other_found = data(await client.call_tool("search_memories", {"query": "vault code"}))
        assert [m["id"] for m in other_found["memories"]] == [added["memory"]["id"]]
        assert "not found" in refusal(await client.call_tool("delete_memory", {"id": hidden.id}))
        assert "importance" in refusal(
            await client.call_tool("add_memory", {"text": "x", "importance": -1})
        )
    # The subprocess wrote to the shared database, for that user only.
    assert [i.text for i in await services.memory.list(user)] == ["I am learning the cello"]
    assert (await services.memory.get(other, hidden.id)).text.startswith("Another user's")
    print(f"stdio server ready in {ready_s:.1f} s")


def test_stdio_stdout_carries_protocol_only(pg_url: str, data_dir: Path) -> None:
    """Raw JSON-RPC lines in, and every line out is JSON-RPC; the process ends at EOF."""
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "search_memories", "arguments": {"query": "anything"},
        }},
    ]  # fmt: skip
    env = cli_env(pg_url, data_dir)
    user = f"u-{uuid.uuid4().hex[:10]}"
    process = subprocess.Popen(
        [sys.executable, "-m", "mnemograph.cli", "mcp", "--user", user],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        for line in lines:
            process.stdin.write(json.dumps(line) + "\n")
        process.stdin.flush()
        answers: list[dict[str, Any]] = []
        while len([a for a in answers if "id" in a]) < 3:  # every request answered
            out = process.stdout.readline()
            assert out, process.stderr.read() if process.stderr else "stdout closed"
            answers.append(json.loads(out))  # any line that is not JSON-RPC fails here
        process.stdin.close()  # EOF: the server ends
        assert process.wait(timeout=60) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
    assert all(a["jsonrpc"] == "2.0" for a in answers), answers
    by_id = {a["id"]: a for a in answers if "id" in a}
    assert by_id[1]["result"]["serverInfo"]["name"] == "mnemograph"
    assert {t["name"] for t in by_id[2]["result"]["tools"]} == TOOLS
    assert by_id[3]["result"]["structuredContent"] == {"query": "anything", "memories": []}

    bad = subprocess.run(
        [sys.executable, "-m", "mnemograph.cli", "mcp", "--user", "no spaces allowed"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stdout == "", bad
    assert "invalid user id" in bad.stderr


async def test_handshake_era_clients_over_http(base: str, services: Services) -> None:
    """A client pinned to the initialize handshake (2025 protocol versions, what most desktop
    clients speak today) is served statelessly: no session to keep, any worker answers."""
    user, key = await new_key(services)
    http = httpx2.AsyncClient(headers={"X-Api-Key": key}, timeout=60)
    transport = streamable_http_client(f"{base}/mcp", http_client=http)
    async with http, Client(transport, mode="legacy") as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        added = data(await client.call_tool("add_memory", {"text": "I speak Basque"}))
        found = data(await client.call_tool("search_memories", {"query": "languages I speak"}))
        assert [m["id"] for m in found["memories"]] == [added["memory"]["id"]]
    assert services.memory is not None and await services.memory.count(user) == 1


async def test_mcp_on_a_served_process_with_two_workers(
    pg_url: str, data_dir: Path, services: Services, tmp_path: Path
) -> None:
    """`mnemograph serve --workers 2` (services opened by the app's own lifespan): every call on
    a fresh connection, so either worker may answer; no session ties a client to one."""
    user, key = await new_key(services)
    env = cli_env(pg_url, data_dir)
    async with serve_process(env, tmp_path / "serve.log", "--workers", "2") as base:
        said = {
            "locker": "My gym locker number is 17",
            "tractor": "I drive a green tractor on weekends",
            "sister": "My sister moved to Oslo",
            "stamps": "I collect vintage postage stamps",
        }
        ids = {}
        for word, text in said.items():
            async with http_client(base, key) as client:
                ids[word] = data(await client.call_tool("add_memory", {"text": text}))["memory"]
        for word, memory in ids.items():
            async with http_client(base, key) as client:
                found = data(await client.call_tool("search_memories", {"query": word, "k": 1}))
                assert [m["id"] for m in found["memories"]] == [memory["id"]], (word, found)
    assert services.memory is not None and await services.memory.count(user) == 4


def test_outages_are_tool_errors_that_name_the_service() -> None:
    request = httpx2.Request("POST", "http://llm/v1/chat/completions")
    outages: list[tuple[Exception, str]] = [
        (psycopg.OperationalError("connection refused"), "PostgreSQL is unavailable"),
        (openai.APIConnectionError(request=request), "LLM endpoint is unreachable"),
        (openai.APITimeoutError(request=request), "did not answer in time"),
    ]
    for exc, says in outages:
        with pytest.raises(ToolError, match=says), tool_errors():
            raise exc
