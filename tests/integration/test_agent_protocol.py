"""The Agent Protocol on `mnemograph serve`, through the official clients: `langgraph_sdk`
(threads, runs, streamed tokens, state, history, store), `RemoteGraph` as a node of another
graph across two server processes, and curl. Servers listen on 127.0.0.1: in-process uvicorn
on the session's services, or `mnemograph serve` subprocesses on the session's database."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from mnemograph.services import Services
from tests.conftest import cli_env
from tests.fakes import ScriptedChatModel
from tests.servers import new_key, serve, serve_process

HI = {"messages": [{"role": "user", "content": "I like green tea"}]}


@pytest.fixture(scope="module")
async def base(services: Services) -> AsyncIterator[str]:
    async with serve(services) as url:
        yield url


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [part async for part in stream]


async def status_of(call: Any) -> int:
    """The HTTP status a client call failed with (``runs.wait`` raises plain httpx errors)."""
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    raise AssertionError("the call succeeded")


async def test_sdk_threads_runs_stream_state_history(base: str, services: Services) -> None:
    _user, key = await new_key(services)
    client = get_client(url=base, api_key=key)
    assert [a["graph_id"] for a in await client.assistants.search()] == ["mnemograph"]
    assert (await client.assistants.get("mnemograph"))["graph_id"] == "mnemograph"
    schemas = await client.assistants.get_schemas("mnemograph")
    assert "strategy" in schemas["context_schema"]["properties"]
    drawn = await RemoteGraph("mnemograph", url=base, api_key=key).aget_graph()
    assert {"load_memory", "call_model", "write_memory"} <= set(drawn.nodes), drawn.nodes
    thread = await client.threads.create(metadata={"topic": "tea"})
    tid = thread["thread_id"]
    assert uuid.UUID(tid) and thread["metadata"]["topic"] == "tea"
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=tid)
    assert (await client.threads.create(thread_id=tid, if_exists="do_nothing"))["thread_id"] == tid

    out = await client.runs.wait(tid, "mnemograph", input=HI, context={"strategy": "buffer"})
    assert out["messages"][-1]["content"] == "echo: I like green tea", out
    state = await client.threads.get_state(tid)
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai"]
    assert state["checkpoint"]["checkpoint_id"] and state["checkpoint"]["thread_id"] == tid
    found = await client.threads.search(metadata={"topic": "tea", "graph_id": "mnemograph"})
    assert [t["thread_id"] for t in found] == [tid]

    services.set_chat_model(ScriptedChatModel())  # the echo, streamed a word at a time
    text = "please stream these six words"
    parts = await collect(client.runs.stream(
        tid, "mnemograph", input={"messages": [{"role": "user", "content": text}]},
        stream_mode="messages-tuple",
    ))  # fmt: skip
    assert parts[0].event == "metadata" and parts[0].data["run_id"]
    tokens = [p.data[0]["content"] for p in parts if p.event == "messages"]
    assert len(tokens) >= 6 and "".join(tokens) == f"echo: {text}", tokens
    assert all(p.data[1]["langgraph_node"] == "call_model" for p in parts if p.event == "messages")

    parts = await collect(client.runs.stream(
        tid, "mnemograph", input={"messages": [{"type": "human", "content": "modes"}]},
        stream_mode=["values", "updates", "events"],
    ))  # fmt: skip
    kinds = {p.event for p in parts}
    assert {"metadata", "values", "updates", "events"} <= kinds, kinds
    assert parts[-1].event != "error", parts[-1]
    assert any(p.event == "updates" and "call_model" in p.data for p in parts)
    assert any(p.event == "events" and p.data["event"] == "on_chat_model_stream" for p in parts)
    last_values = [p.data for p in parts if p.event == "values"][-1]
    assert [m["content"] for m in last_values["messages"]][-2:] == ["modes", "echo: modes"]

    history = await client.threads.get_history(tid, limit=50)
    newest = (await client.threads.get_state(tid))["checkpoint"]
    assert len(history) >= 6 and history[0]["checkpoint"] == newest  # newest first
    assert len(history[-1]["values"].get("messages", [])) < len(history[0]["values"]["messages"])
    patched = await client.threads.update(tid, metadata={"mood": "calm"})
    assert patched["metadata"]["topic"] == "tea" and patched["metadata"]["mood"] == "calm"
    ai_input = {"messages": [{"type": "ai", "content": "x"}]}
    assert (
        await status_of(client.runs.wait(tid, "mnemograph", input=HI, context={"kg_hops": 9}))
        == 422
    )
    assert await status_of(client.runs.wait(tid, "mnemograph", input=ai_input)) == 422
    assert await status_of(client.runs.wait(tid, "other-graph", input=HI)) == 404
    await client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        await client.threads.get(tid)
    await client.aclose()


async def test_another_users_thread_id_is_a_thread_of_ones_own(
    base: str, services: Services
) -> None:
    """Thread ids are per user: Bob finds nothing under Alice's id, exactly as under an id
    nobody uses, and running on it makes a thread of his own; Alice's is never touched."""
    _alice, alice_key = await new_key(services)
    _bob, bob_key = await new_key(services)
    alice, bob = get_client(url=base, api_key=alice_key), get_client(url=base, api_key=bob_key)
    tid = (await alice.threads.create())["thread_id"]
    await alice.runs.wait(tid, "mnemograph", input=HI)
    free = str(uuid.uuid4())
    for probe in (tid, free):
        reads: dict[str, Any] = {
            "get": bob.threads.get(probe),
            "state": bob.threads.get_state(probe),
            "history": bob.threads.get_history(probe),
            "update": bob.threads.update(probe, metadata={"x": 1}),
            "delete": bob.threads.delete(probe),
            "wait": bob.runs.wait(probe, "mnemograph", input=HI),
            "stream": collect(bob.runs.stream(probe, "mnemograph", input=HI)),
        }
        for name, attempt in reads.items():
            assert await status_of(attempt) == 404, (name, probe == tid)
    assert await bob.threads.count() == 0
    made = await bob.threads.create(thread_id=tid)
    assert made["thread_id"] == tid and not made.get("values")
    out: Any = await bob.runs.wait(tid, "mnemograph", input={
        "messages": [{"role": "user", "content": "bob here"}]})  # fmt: skip
    assert [m["content"] for m in out["messages"]] == ["bob here", "echo: bob here"]
    assert [t["thread_id"] for t in await bob.threads.search(limit=100)] == [tid]
    state = await alice.threads.get_state(tid)  # untouched
    assert [m["content"] for m in state["values"]["messages"]] == [
        "I like green tea", "echo: I like green tea",
    ]  # fmt: skip
    await alice.aclose()
    await bob.aclose()


async def test_store_is_the_callers_hybrid_memory(base: str, services: Services) -> None:
    alice_id, alice_key = await new_key(services)
    _bob, bob_key = await new_key(services)
    alice, bob = get_client(url=base, api_key=alice_key), get_client(url=base, api_key=bob_key)
    await alice.store.put_item(["whatever"], "cat-1", {"text": "My cat is called Miso"})
    await alice.store.put_item(["memories"], "job-1", {"text": "I work at Acme as a welder"})
    item = await alice.store.get_item(["ignored"], "cat-1")
    assert item is not None and item["value"]["text"] == "My cat is called Miso"
    assert item["namespace"] == [alice_id, "memories"]  # forced, whatever was sent
    by_meaning = await alice.store.search_items(["memories"], query="name of my feline pet")
    assert by_meaning["items"][0]["key"] == "cat-1", by_meaning
    scores = [i["score"] for i in by_meaning["items"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1, scores
    by_word = await alice.store.search_items([], query="Acme")
    assert by_word["items"][0]["key"] == "job-1"
    assert services.memory is not None
    direct = await services.memory.search(alice_id, "name of my feline pet", 10)
    assert [h.item.id for h in direct] == [i["key"] for i in by_meaning["items"]]
    listed = await alice.store.search_items(["memories"])
    assert sorted(i["key"] for i in listed["items"]) == ["cat-1", "job-1"]
    # Bob sees none of it, by key or by search, and cannot delete it.
    assert await bob.store.get_item([alice_id, "memories"], "cat-1") is None
    assert (await bob.store.search_items([alice_id, "memories"], query="cat"))["items"] == []
    await bob.store.delete_item([alice_id, "memories"], "cat-1")
    assert await alice.store.get_item(["memories"], "cat-1") is not None
    await alice.store.delete_item(["memories"], "cat-1")
    assert await alice.store.get_item(["memories"], "cat-1") is None
    with pytest.raises(UnprocessableEntityError):
        await alice.store.put_item(["memories"], "empty", {"note": "no text"})
    await alice.aclose()
    await bob.aclose()


async def test_stateless_runs_leave_no_thread(base: str, services: Services) -> None:
    user, key = await new_key(services)
    client = get_client(url=base, api_key=key)
    out = await client.runs.wait(None, "mnemograph", input=HI)
    assert out["messages"][-1]["content"] == "echo: I like green tea"
    parts = await collect(client.runs.stream(None, "mnemograph", input=HI, stream_mode="values"))
    assert parts[-1].event == "values" and len(parts[-1].data["messages"]) == 2
    kept = await client.runs.wait(None, "mnemograph", input=HI, on_completion="keep")
    assert kept["messages"]
    for _ in range(100):  # the deletes wait for each turn's memory work
        if len(await services.thread_registry().list(user)) == 1:
            break
        await asyncio.sleep(0.1)
    assert len(await services.thread_registry().list(user)) == 1
    await client.aclose()


async def curl(url: str, *args: str, body: Any = None) -> str:
    """Real curl, as a shell user would call the server (``-sS``: a 4xx still prints)."""
    if body is not None:
        args = (*args, "-H", "content-type: application/json", "-d", json.dumps(body))
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-N", "--max-time", "60", *args, url, stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    return out.decode()


async def test_curl_create_run_stream_state_history_search_delete(
    base: str, services: Services
) -> None:
    user_id, key = await new_key(services)
    auth = ("-H", f"Authorization: Bearer {key}")
    assert json.loads(await curl(f"{base}/info"))["flags"]["assistants"] is True
    made = await curl(f"{base}/threads", *auth, body={"thread_id": f"curl-{user_id}"})
    tid = json.loads(made)["thread_id"]
    run = {"assistant_id": "mnemograph", "input": HI}
    out = json.loads(await curl(f"{base}/threads/{tid}/runs/wait", *auth, body=run))
    assert out["messages"][-1]["content"] == "echo: I like green tea"
    services.set_chat_model(ScriptedChatModel())
    raw = await curl(
        f"{base}/threads/{tid}/runs/stream", "-H", f"x-api-key: {key}",
        body={**run, "stream_mode": "messages-tuple"},
    )  # fmt: skip
    lines = raw.splitlines()
    events = [line[7:] for line in lines if line.startswith("event: ")]
    tokens = [json.loads(line[6:])[0]["content"] for line in lines
              if line.startswith("data: ") and '"langgraph_node"' in line]  # fmt: skip
    assert events[0] == "metadata" and "messages" in events and len(tokens) >= 4, raw[:500]
    assert "".join(tokens) == "echo: I like green tea"
    state = json.loads(await curl(f"{base}/threads/{tid}/state", *auth))
    assert len(state["values"]["messages"]) == 4
    history = json.loads(await curl(f"{base}/threads/{tid}/history?limit=3", *auth))
    assert len(history) == 3
    assert services.memory is not None
    await services.memory.add(user_id, "The user's sister lives in Porto")
    search = {"namespace_prefix": [], "query": "sibling"}
    hits = json.loads(await curl(f"{base}/store/items/search", *auth, body=search))
    assert "Porto" in hits["items"][0]["value"]["text"]
    rest = json.loads(await curl(f"{base}/api/threads/{tid}", *auth))  # the REST view
    assert rest["turns"] == 2 and rest["messages"][0]["content"] == "I like green tea"
    await curl(f"{base}/threads/{tid}", "-X", "DELETE", *auth)
    assert "not found" in await curl(f"{base}/threads/{tid}", *auth)
    assert "missing API key" in await curl(f"{base}/threads/{tid}/state")


class Parent(TypedDict, total=False):
    messages: list[Any]
    last_reply: str


def parent_graph(url: str, key: str) -> Any:
    """Another application's graph with the Mnemograph server as one of its nodes."""
    builder = StateGraph(Parent)
    builder.add_node("mnemograph", RemoteGraph("mnemograph", url=url, api_key=key))
    builder.add_node("note", lambda s: {"last_reply": s["messages"][-1]["content"]})
    builder.add_edge(START, "mnemograph")
    builder.add_edge("mnemograph", "note")
    builder.add_edge("note", END)
    return builder.compile()


async def test_remote_graph_node_resumes_a_thread_across_two_servers(
    services: Services, pg_url: str, tmp_path: Path
) -> None:
    _user, key = await new_key(services)
    tid = f"remote-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": tid}}
    turns = ["my name is Ada", "what is my name"]
    for n, text in enumerate(turns):  # one server process per turn, the same database
        env = cli_env(pg_url, tmp_path / "data")
        async with serve_process(env, tmp_path / "serve.log") as url:
            parent = parent_graph(url, key)
            out = await parent.ainvoke({"messages": [{"role": "user", "content": text}]}, config)
            assert out["last_reply"] == f"echo: {text}", out
            remote = RemoteGraph("mnemograph", url=url, api_key=key)
            snapshot = await remote.aget_state(config)
            contents = [m["content"] for m in snapshot.values["messages"]]
            assert contents == [c for t in turns[: n + 1] for c in (t, f"echo: {t}")], contents
            assert snapshot.config["configurable"]["thread_id"] == tid
            history = [s async for s in remote.aget_state_history(config, limit=100)]
            assert len(history) >= 3 * (n + 1) and history[0].values == snapshot.values
