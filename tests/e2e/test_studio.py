"""LangGraph Studio smoke test: ``langgraph dev`` serves the graph named in ``langgraph.json``
and two turns on one thread through its API keep both exchanges.

The server runs offline with the fake model and no backing services: the module-level graph
falls back to the lazily built services of ``mnemograph.studio`` and the platform's own
checkpointer and store, which is exactly what a developer gets from ``langgraph dev`` in a
fresh clone.
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
import pytest
from langgraph_sdk import get_client

REPO = Path(__file__).resolve().parents[2]
GRAPH_ID = "mnemograph"
START_TIMEOUT_S = 90.0


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


def absolute_config(tmp: Path) -> Path:
    """The repo's ``langgraph.json`` with its relative paths made absolute.

    ``langgraph dev`` resolves graph paths against the working directory and keeps its
    in-memory database in ``./.langgraph_api``; running from a temp dir with this copy tests
    the real graph spec while leaving nothing behind in the checkout.
    """
    config: dict[str, Any] = json.loads((REPO / "langgraph.json").read_text())
    config["dependencies"] = [
        str((REPO / dep).resolve()) if dep.startswith(".") else dep
        for dep in config.get("dependencies", [])
    ]
    graphs = {}
    for name, spec in config["graphs"].items():
        path, _, variable = spec.partition(":")
        graphs[name] = f"{(REPO / path).resolve()}:{variable}"
    config["graphs"] = graphs
    out = tmp / "langgraph.json"
    out.write_text(json.dumps(config, indent=2))
    return out


def studio_env(data_dir: Path) -> dict[str, str]:
    """Offline, quiet, fake model. Outbound HTTP goes to a dead proxy, so any attempt to
    reach the internet (telemetry, version checks, LangSmith) fails instead of passing
    silently on a machine that happens to be online."""
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DATABASE_URL", "NEO4J_URI", "PYTHONPATH")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("LANGSMITH_", "LANGCHAIN_"))
    }
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    env.update(
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="1",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        MNEMOGRAPH_MODEL="fake",
        MNEMOGRAPH_DATA_DIR=str(data_dir),
        HTTP_PROXY=dead_proxy,
        HTTPS_PROXY=dead_proxy,
        http_proxy=dead_proxy,
        https_proxy=dead_proxy,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        HF_HUB_OFFLINE="1",
    )
    return env


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[str]:
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
            env=studio_env(tmp_path / "data"),
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
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)


async def test_studio_runs_two_turns_on_one_thread(studio: str) -> None:
    client = get_client(url=studio)

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

    thread = await client.threads.create()
    thread_id = thread["thread_id"]
    context: dict[str, Any] = {"user_id": "studio-user", "strategy": "window", "window_k": 4}
    for text in ("my name is Ada", "what is my name?"):
        await client.runs.wait(
            thread_id,
            GRAPH_ID,
            input={"messages": [{"type": "human", "content": text}]},  # type: ignore[dict-item]
            context=context,
            raise_error=True,
        )

    state = await client.threads.get_state(thread_id)
    values: dict[str, Any] = state["values"]  # type: ignore[assignment]
    exchanges = [(m["type"], m["content"]) for m in values["messages"]]
    assert exchanges == [
        ("human", "my name is Ada"),
        ("ai", "echo: my name is Ada"),
        ("human", "what is my name?"),
        ("ai", "echo: what is my name?"),
    ], exchanges
    assert values.get("turn") == 2, values
    history = await client.threads.get_history(thread_id, limit=50)
    assert len(history) >= 2, "two runs must leave a checkpoint chain"
