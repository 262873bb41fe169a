"""The inspector page in a real browser: headless Debian Chromium driven over CDP against the
app served by uvicorn on 127.0.0.1, with the session's real Postgres and ArcadeDB.

Nothing here skips: without chromium the test fails and names the install command.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from fastapi import FastAPI

from mnemograph.services import Services
from mnemograph.web.inspector import mount_inspector
from server import create_app
from stores.models.fake_llm import EchoChatModel
from stores.postgres.users import UserRegistry
from tests.cdp import Page, open_browser
from tests.fakes import ScriptedChatModel
from tests.servers import serve_app

PAGE_STATE = (
    "JSON.stringify({status: document.getElementById('status').textContent,"
    " messages: [...document.querySelectorAll('#messages .msg')].map(m => m.textContent)})"
)


def inspector_app(services: Services) -> FastAPI:
    """The production app; mounts the page only if ``create_app`` does not already."""
    app = create_app(services)
    if not any(getattr(route, "path", None) == "/" for route in app.routes):
        mount_inspector(app)
    return app


async def seed(services: Services, user_id: str) -> str:
    """Three current facts and one invalidated (moved from Berlin to Paris), plus a memory."""
    assert services.graph is not None and services.memory is not None
    now = int(time.time() * 1000)
    await services.graph.upsert_triples(
        user_id,
        [
            {"subject": "I", "predicate": "lives_in", "object": "Berlin"},
            {"subject": "I", "predicate": "works_at", "object": "Acme"},
            {"subject": "Acme", "predicate": "located_in", "object": "Berlin"},
        ],
        thread_id=None,
        message_id=None,
        at_ms=now - 60_000,
    )
    moved = await services.graph.upsert_triples(
        user_id,
        [{"subject": "I", "predicate": "lives_in", "object": "Paris"}],
        thread_id=None,
        message_id=None,
        at_ms=now,
    )
    assert moved.invalidated == 1, moved
    item = await services.memory.add(
        user_id, "The user drinks green tea every morning", kind="preference", importance=0.7
    )
    return str(item.id)


async def test_inspector_chat_stream_memories_and_graph(services: Services, tmp_path: Path) -> None:
    users = UserRegistry(services.pool)  # type: ignore[arg-type]
    await users.setup()
    user, key = await users.create(f"inspector-{uuid.uuid4().hex[:8]}")
    memory_id = await seed(services, user.user_id)
    previous_model = services._chat_model
    services.set_chat_model(ScriptedChatModel())  # the echo, streamed a word at a time
    message = "Hello inspector, I moved to Paris"
    try:
        async with serve_app(inspector_app(services)) as base:
            async with open_browser(tmp_path / "profile") as page:
                await run_page(page, services, base, key, message, memory_id, tmp_path)
    finally:
        services._chat_model = previous_model

    assert services.memory is not None
    remaining = {m.id for m in await services.memory.list(user.user_id)}
    assert memory_id not in remaining, "the page's delete button did not delete the memory"


async def run_page(
    page: Page,
    services: Services,
    base: str,
    key: str,
    message: str,
    memory_id: str,
    tmp_path: Path,
) -> None:
    await page.navigate(base + "/")
    assert await page.evaluate("document.title") == "Mnemograph inspector"

    # The key goes in through the form, as a user would, and must survive a reload.
    await page.type_text("#api-key", key)
    await page.evaluate("document.getElementById('key-form').requestSubmit()")
    await page.wait_for(
        "document.body.dataset.ready === 'true'",
        what="the page to load threads, memories and graph",
        debug=PAGE_STATE,
    )
    assert await page.evaluate(f"localStorage.getItem('mnemograph.apiKey') === {json.dumps(key)}")
    # The page reads threads from the REST routes under /api/threads (/threads is the Agent
    # Protocol's, with another shape).
    fetched = await page.evaluate(
        "performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)"
    )
    assert "/api/threads" in fetched, fetched
    assert not [p for p in fetched if p == "/threads" or p.startswith("/threads/")], fetched

    # The graph: three current facts drawn solid, the invalidated one dashed grey.
    await page.wait_for("document.getElementById('kg').dataset.rendered === 'true'")
    counts = await page.evaluate(
        "({current: document.querySelectorAll('#kg path.edge.current').length,"
        " invalidated: document.querySelectorAll('#kg path.edge.invalidated').length,"
        " nodes: [...document.querySelectorAll('#kg g.node')].map(n => n.dataset.entity).sort(),"
        " solid: getComputedStyle(document.querySelector('#kg path.edge.current'))"
        "   .strokeDasharray,"
        " dashed: getComputedStyle(document.querySelector('#kg path.edge.invalidated'))"
        "   .strokeDasharray,"
        " dashedColor: getComputedStyle(document.querySelector('#kg path.edge.invalidated'))"
        "   .stroke,"
        " legend: document.getElementById('legend').textContent})"
    )
    assert counts["current"] == 3 and counts["invalidated"] == 1, counts
    assert counts["nodes"] == ["acme", "berlin", "paris", "user"], counts
    assert counts["solid"] == "none" and counts["dashed"] not in ("", "none"), counts
    assert counts["dashedColor"] == "rgb(154, 160, 168)", counts
    assert "invalidated" in counts["legend"] and "current" in counts["legend"]
    boxes = await page.evaluate(
        "[...document.querySelectorAll('#kg g.node')].map(n => {"
        " const b = n.getBoundingClientRect(); return [b.width, b.height]; })"
    )
    assert boxes and all(w > 10 and h > 10 for w, h in boxes), boxes  # actually drawn

    # The seeded memory is listed with a delete button.
    row = f"#memories li[data-memory-id={json.dumps(memory_id)}]"
    await page.wait_for(f"!!document.querySelector({json.dumps(row)})", what="the seeded memory")
    assert "green tea" in await page.evaluate(
        f"document.querySelector({json.dumps(row)}).textContent"
    )

    # Chat: type, press Enter, and watch the reply arrive as several streamed chunks.
    await page.type_text("#chat-input", message)
    await page.press_enter()
    expected = f"echo: {message}"
    reply = "document.querySelector('#messages .msg.ai:last-child')"
    await page.wait_for(
        f"{reply} && {reply}.dataset.done === 'true'", what="the streamed reply", debug=PAGE_STATE
    )
    streamed = await page.evaluate(
        f"({{text: {reply}.textContent, chunks: Number({reply}.dataset.chunks),"
        f" error: {reply}.classList.contains('error')}})"
    )
    assert streamed["text"] == expected and not streamed["error"], streamed
    assert streamed["chunks"] == len(expected.split()), streamed  # one event per word
    await page.wait_for(
        "document.querySelectorAll('#threads li').length === 1",
        what="the new thread in the list",
        debug=PAGE_STATE,
    )

    # A model that cannot stream still gets its reply shown, from the end-of-model event.
    services.set_chat_model(EchoChatModel())
    await page.wait_for("!document.getElementById('send').disabled", what="the turn to finish")
    second = "And a plain reply please"
    await page.type_text("#chat-input", second)
    await page.press_enter()
    await page.wait_for(
        f"{reply} && {reply}.dataset.done === 'true' && {reply}.textContent.includes('plain')",
        what="the unstreamed reply",
        debug=PAGE_STATE,
    )
    plain = await page.evaluate(f"({{text: {reply}.textContent, chunks: {reply}.dataset.chunks}})")
    assert plain == {"text": f"echo: {second}", "chunks": "0"}, plain

    # Everything on screen at once: reply, thread, summary, memory, graph.
    await page.wait_for("!document.getElementById('send').disabled", what="the turn to finish")
    shot = await page.screenshot(tmp_path / "inspector.png")
    assert shot.stat().st_size > 10_000, "screenshot is suspiciously small"
    print(f"inspector screenshot: {shot}")

    # Deleting the memory removes it from the list (and, checked by the caller, the store).
    await page.evaluate(f"document.querySelector({json.dumps(row + ' button.delete')}).click()")
    await page.wait_for(f"!document.querySelector({json.dumps(row)})", what="memory deleted")

    # A reload keeps the key and shows the thread's history from the checkpoint.
    await page.navigate(base + "/")
    await page.wait_for("document.body.dataset.ready === 'true'", debug=PAGE_STATE)
    history = await page.evaluate(
        "[...document.querySelectorAll('#messages .msg')].map(m => m.textContent)"
    )
    assert history == [message, expected, second, f"echo: {second}"], history
    assert not page.errors, page.errors
