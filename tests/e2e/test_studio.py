"""LangGraph Studio: ``langgraph dev`` runs the real pipeline on the real memory.

The server is started from the repo's ``langgraph.json`` with its extension points: the
project's Postgres saver, the store over the hybrid memory, API-key/JWT auth and the REST
app. Its services are the embedded PostgreSQL and ArcadeDB in a temp data dir; the model is
the scripted OpenAI-compatible stub (``tests.openai_stub``), so extraction returns triples
and memories. Over ``langgraph_sdk``: two turns on one thread leave recalled items and
extracted triples (with their outcomes) in the thread's state, a third turn on a new thread
recalls the first thread's fact, and another user (a JWT) sees none of it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from langgraph_sdk import get_client

from tests.openai_stub import OpenAIStub, openai_stub

REPO = Path(__file__).resolve().parents[2]
GRAPH_ID = "mnemograph"
START_TIMEOUT_S = 240.0
"""Start-up opens the services: embedded PostgreSQL, ArcadeDB, the embedder."""
JWT_SECRET = "studio-test-secret-of-at-least-32-bytes"
JWT_USER = "jwt-user"
"""The account (by name) the test's JWTs name."""
PATH_KEYS = (("checkpointer", "path"), ("store", "path"), ("auth", "path"), ("http", "app"))


def langgraph_bin() -> Path:
    """``langgraph`` from the running interpreter's environment (the project's venv)."""
    path = Path(sys.executable).parent / "langgraph"
    if not path.is_file():
        raise AssertionError(f"{path} not found: install the dev extra (langgraph-cli[inmem]>=0.4)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _absolute(spec: str) -> str:
    """A ``path/to/file.py:name`` spec made absolute (module specs stay as they are)."""
    path, _, variable = spec.rpartition(":")
    if not path.startswith(".") and "/" not in path:
        return spec
    return f"{(REPO / path).resolve()}:{variable}"


def absolute_config(tmp: Path) -> Path:
    """The repo's ``langgraph.json`` with its relative paths made absolute.

    ``langgraph dev`` resolves paths against the working directory and keeps its in-memory
    database in ``./.langgraph_api``; running from a temp dir with this copy tests the real
    spec (graph, checkpointer, store, auth and app) while leaving nothing in the checkout.
    """
    config: dict[str, Any] = json.loads((REPO / "langgraph.json").read_text())
    config["dependencies"] = [
        str((REPO / dep).resolve()) if dep.startswith(".") else dep
        for dep in config.get("dependencies", [])
    ]
    config["graphs"] = {name: _absolute(spec) for name, spec in config["graphs"].items()}
    for section, key in PATH_KEYS:
        part = config.get(section)
        if isinstance(part, dict) and key in part:
            part[key] = _absolute(part[key])
    out = tmp / "langgraph.json"
    out.write_text(json.dumps(config, indent=2))
    return out


def studio_env(data_dir: Path, model_url: str) -> dict[str, str]:
    """Offline and quiet; the model is the stub at ``model_url``, the services embedded in
    ``data_dir``. Outbound HTTP goes to a dead proxy, so any attempt to reach the internet
    (telemetry, version checks, LangSmith) fails instead of passing silently on a machine
    that happens to be online."""
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DATABASE_URL", "NEO4J_URI", "PYTHONPATH")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("LANGSMITH_", "LANGCHAIN_", "MNEMOGRAPH_"))
    }
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    env.update(
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="1",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        MNEMOGRAPH_MODEL="stub-model",
        OPENAI_BASE_URL=model_url,
        OPENAI_API_KEY="stub-key",
        MNEMOGRAPH_DATA_DIR=str(data_dir),
        MNEMOGRAPH_JWT_SECRET=JWT_SECRET,
        MNEMOGRAPH_KEEP_WARM_S="0",
        HTTP_PROXY=dead_proxy,
        HTTPS_PROXY=dead_proxy,
        http_proxy=dead_proxy,
        https_proxy=dead_proxy,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        HF_HUB_OFFLINE="1",
    )
    return env


CHAT_REPLIES = [
    "Nice to meet you, Ada!",
    "Trams are lovely.",
    "You live in Lisbon.",
    "I do not know where you live.",
]
"""The model's replies, one per turn, in the order the test sends them."""

TRIPLES = {
    "ExtractedTriples": [
        {
            "triples": [
                {"subject": "I", "predicate": "lives in", "object": "Lisbon", "confidence": 0.95},
                # Never said by the user: dropped as ungrounded.
                {"subject": "I", "predicate": "works at", "object": "Globex", "confidence": 0.9},
                # Said, but the model is unsure: dropped for low confidence.
                {"subject": "I", "predicate": "likes", "object": "Lisbon", "confidence": 0.2},
            ]
        },
        {"triples": [{"subject": "I", "predicate": "likes", "object": "trams"}]},
    ],
    "ExtractedMemories": [
        {
            "items": [
                {"type": "fact", "text": "User lives in Lisbon", "importance": 0.8,
                 "subject": "user.home_city"},
            ]
        },
        {"items": [{"type": "preference", "text": "User likes trams", "importance": 0.5}]},
    ],
}  # fmt: skip
"""What extraction answers on the two statements (questions are not extracted)."""


@pytest.fixture
def model() -> Iterator[OpenAIStub]:
    with openai_stub(list(CHAT_REPLIES), tool_replies=TRIPLES) as stub:
        yield stub


@pytest.fixture
def studio(tmp_path: Path, model: OpenAIStub) -> Iterator[str]:
    """A running ``langgraph dev``; its log is in the failure message if it never answers."""
    port = free_port()
    config = absolute_config(tmp_path)
    log_path = tmp_path / "langgraph-dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(langgraph_bin()), "dev", "--config", str(config), "--no-browser",
                "--no-reload", "--host", "127.0.0.1", "--port", str(port),
            ],
            cwd=tmp_path,
            env=studio_env(tmp_path / "data", model.base_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # so teardown can stop it and anything it spawned
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"langgraph dev exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
                )
            try:
                if httpx.get(f"{url}/ok", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"langgraph dev not up after {START_TIMEOUT_S}s:\n"
                    f"{log_path.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        # A JWT's subject must be an account (issue 16 item 6): the test's other user is one.
        # The CLI joins the embedded PostgreSQL the server started in the same data dir.
        created = subprocess.run(
            [sys.executable, "-m", "mnemograph.cli", "users", "create", JWT_USER],
            cwd=REPO, env=studio_env(tmp_path / "data", model.base_url),
            capture_output=True, text=True, timeout=START_TIMEOUT_S,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)


def _values(state: Any) -> dict[str, Any]:
    values: dict[str, Any] = state["values"]
    return values


async def test_studio_runs_the_real_pipeline_on_the_real_memory(
    studio: str, model: OpenAIStub
) -> None:
    client = get_client(url=studio)  # no credential: the dev user

    # What Studio itself loads first: the assistant, its schemas and its drawing.
    assistants = await client.assistants.search(graph_id=GRAPH_ID)
    assert assistants, "langgraph dev registered no assistant for the graph"
    assistant_id = assistants[0]["assistant_id"]
    schemas = await client.assistants.get_schemas(assistant_id)
    context_props = (schemas.get("context_schema") or {}).get("properties", {})
    assert {"user_id", "strategy", "window_k"} <= set(context_props), schemas
    drawing = await client.assistants.get_graph(assistant_id)
    nodes = {n["id"] for n in drawing["nodes"]}
    assert {"load_memory", "call_model", "summarize", "extract_knowledge"} <= nodes, nodes

    # A user id in the context is not trusted: the run belongs to the credential's user.
    context: dict[str, Any] = {"user_id": "mallory", "strategy": "window", "window_k": 4}

    async def turn(thread_id: str, text: str, as_client: Any = client) -> dict[str, Any]:
        await as_client.runs.wait(
            thread_id,
            GRAPH_ID,
            input={"messages": [{"type": "human", "content": text}]},
            context=context,
            raise_error=True,
        )
        return _values(await as_client.threads.get_state(thread_id))

    first = (await client.threads.create())["thread_id"]
    await turn(first, "My name is Ada and I live in Lisbon.")
    values = await turn(first, "I also like the trams of Lisbon.")
    print("\nturn 2 state (recalled + extracted):")
    print(json.dumps({k: values.get(k) for k in ("turn", "recalled", "extracted")}, indent=2))

    exchanges = [(m["type"], m["content"]) for m in values["messages"]]
    assert exchanges == [
        ("human", "My name is Ada and I live in Lisbon."),
        ("ai", CHAT_REPLIES[0]),
        ("human", "I also like the trams of Lisbon."),
        ("ai", CHAT_REPLIES[1]),
    ], exchanges
    assert values.get("turn") == 2, values
    # Turn 2 recalled what turn 1 stored: the knowledge-graph fact and the memory.
    recalled = values["recalled"]
    kinds = {(r["kind"], "lisbon" in r["text"].casefold()) for r in recalled}
    assert {("fact", True), ("memory", True)} <= kinds, recalled
    assert all(set(r) == {"kind", "text", "score", "source"} and r["source"] for r in recalled)
    # ... and shows what it extracted itself, for this turn only.
    extracted = values["extracted"]
    assert extracted["turn"] == 2
    assert [(t["object"], t["outcome"]) for t in extracted["triples"]] == [("trams", "stored")]
    assert [(m["text"], m["outcome"]) for m in extracted["memories"]] == [
        ("User likes trams", "added")
    ]

    # Turn 1's checkpoint keeps turn 1's outcomes, dropped triples and their reasons included.
    history = await client.threads.get_history(first, limit=50)
    assert len(history) >= 2, "two runs must leave a checkpoint chain"
    turn_one = next(
        _values(h)["extracted"]
        for h in history
        if _values(h).get("turn") == 1 and _values(h).get("extracted", {}).get("triples")
    )
    print("turn 1 extracted:", json.dumps(turn_one, indent=2))
    assert [(t["object"], t["outcome"], t.get("reason", "")) for t in turn_one["triples"]] == [
        ("Lisbon", "stored", ""),
        ("Globex", "dropped", "not grounded in the user's words"),
        ("Lisbon", "dropped", "confidence 0.20 below 0.50"),
    ], turn_one
    assert [(m["text"], m["outcome"]) for m in turn_one["memories"]] == [
        ("User lives in Lisbon", "added")
    ]

    # A new thread of the same user recalls the first thread's fact, and the model sees it.
    second = (await client.threads.create())["thread_id"]
    values = await turn(second, "Where do I live?")
    facts = [r for r in values["recalled"] if r["kind"] == "fact"]
    assert any("lisbon" in r["text"].casefold() for r in facts), values["recalled"]
    assert values["extracted"] == {
        "turn": 1,
        "triples": [],
        "memories": [],
        "skipped": {
            "triples": "nothing stated (a question or a pleasantry)",
            "memories": "nothing stated (a question or a pleasantry)",
        },
    }, values["extracted"]
    assert "lisbon" in str(model.requests[2]["messages"][0]["content"]).casefold()

    # The memories live in the dev user's namespace of the store langgraph.json names.
    items = await client.store.search_items(("dev", "memories"), limit=10)
    assert {i["value"]["text"] for i in items["items"]} == {
        "User lives in Lisbon",
        "User likes trams",
    }

    # Another user (a JWT): none of the dev user's threads, facts or memories.
    token = jwt.encode({"sub": JWT_USER, "exp": int(time.time()) + 600}, JWT_SECRET, "HS256")
    other = get_client(url=studio, headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(httpx.HTTPStatusError) as found:
        await other.threads.get_state(first)
    assert found.value.response.status_code == 404
    theirs = (await other.threads.create())["thread_id"]
    values = await turn(theirs, "Where do I live?", other)
    assert values["recalled"] == [], values["recalled"]

    # A bad credential is refused, never mistaken for the dev user.
    bad = get_client(url=studio, headers={"Authorization": "Bearer mg_not-a-key"})
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await bad.threads.create()
    assert refused.value.response.status_code == 401

    # The REST app is mounted in the same process, on the same services.
    async with httpx.AsyncClient(base_url=studio, timeout=10, trust_env=False) as http:
        health = await http.get("/health")
        inspector = await http.get("/")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    assert inspector.status_code == 200, inspector.text[:200]
    assert inspector.headers["content-type"].startswith("text/html")
