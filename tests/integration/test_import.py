"""Backup and restore (issue 16, item 16): `mnemograph users import` (through the functions
the CLI calls) and ``POST /me/import`` (httpx against the production app under uvicorn)
restore an export, so that export -> delete -> import gives the same export again; a
restored thread resumes; a second import changes nothing; a conflicting thread is a 409 with
nothing written; a bad document is refused before any write; the import route's larger body
cap is counted and still comes after the key; a deletion is lifted only by the CLI's
explicit ``--undelete``; another user's data is never touched.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from langchain_core.messages import BaseMessage

from mnemograph.backup import ExportDocument, read_export
from mnemograph.lifecycle import delete_user, export_user, import_user
from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from server import create_app
from stores.errors import Conflict, Gone, InvalidInput
from stores.ids import thread_key
from stores.knowledge.arcadedb import EmbeddedGraphServer
from tests.conftest import REPORT
from tests.fakes import ScriptedChatModel, extraction_replies
from tests.integration.test_gdpr import _leftovers
from tests.integration.test_hostile_bodies import chunked_post
from tests.servers import new_key, serve_app

KB = 1024
MB = 1024 * KB
IMPORT_CAP = MB
"""The served app's MNEMOGRAPH_IMPORT_MAX_BYTES: small, so the cap is cheap to cross."""


@dataclasses.dataclass
class Served:
    url: str
    app: FastAPI
    model: ScriptedChatModel
    services: Services


@pytest.fixture(scope="module")
async def served(services: Services, graph_server: EmbeddedGraphServer) -> AsyncIterator[Served]:
    model = ScriptedChatModel()
    settings = services.settings.model_copy(update={"import_max_bytes": IMPORT_CAP})
    mine = dataclasses.replace(services, _chat_model=model, settings=settings)
    app = create_app(mine)
    async with serve_app(app) as url:
        yield Served(url, app, model, mine)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def body(thread: str, text: str) -> dict[str, Any]:
    return {"input": {"messages": [{"type": "human", "content": text}]},
            "config": {"configurable": {"thread_id": thread, "strategy": "summary",
                                        "summary_trigger_tokens": 20}}}  # fmt: skip


async def populate(served: Served, key: str, threads: int = 2) -> list[str]:
    """Turns over HTTP that leave every kind of state: threads with summaries, memories,
    entities and relations, one of them invalidated by a later value (moved city)."""
    marker = uuid.uuid4().hex[:8]
    ids = [f"im-{uuid.uuid4().hex[:8]}" for _ in range(threads)]
    async with httpx.AsyncClient(base_url=served.url, timeout=120) as http:
        for i, thread in enumerate(ids):
            for city in ("Miami", "Lisbon"):
                served.model.tool_replies = extraction_replies(
                    memories=[{"type": "fact", "text": f"The user lives in {city} ({marker}{i})",
                               "importance": 0.6}],
                    triples=[{"subject": "I", "predicate": "lives_in", "object": city},
                             {"subject": "I", "predicate": "owns", "object": f"boat {marker}{i}"}],
                )  # fmt: skip
                said = f"I live in {city} and own boat {marker}{i}"
                res = await http.post("/agent/invoke", json=body(thread, said), headers=auth(key))
                assert res.status_code == 200, res.text
                await served.app.state.runner.drain()
    served.model.tool_replies = {}
    return ids


def same(doc: dict[str, Any]) -> dict[str, Any]:
    """The export without its time of export."""
    return {k: v for k, v in doc.items() if k != "exported_at"}


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, default=str)


def assert_full(doc: dict[str, Any]) -> None:
    """Every part of the document has something in it, so equality proves something."""
    assert doc["threads"] and all(t["messages"] and t["summary"] for t in doc["threads"]), doc
    assert all(t["turns"] == 2 for t in doc["threads"])
    assert doc["memories"] and doc["graph"]["entities"], doc
    relations = doc["graph"]["relations"]
    assert any(r["invalid_at"] is not None for r in relations), relations
    assert any(r["invalid_at"] is None for r in relations), relations
    assert doc["graph_outbox"] == 0


async def test_round_trip_through_the_cli_functions(
    served: Served, graph_server: EmbeddedGraphServer, request: pytest.FixtureRequest
) -> None:
    """What `users export`, `users delete` and `users import --undelete` run, in order."""
    services = served.services
    user, key = await new_key(services, "imp")
    bystander, other_key = await new_key(services, "imb")
    threads = await populate(served, key)
    await populate(served, other_key, threads=1)
    theirs = await export_user(services, bystander)
    before = await export_user(services, user)
    assert_full(before)
    text = as_json(before)

    await delete_user(services, user)
    # a deleted user comes back only with --undelete
    with pytest.raises(Gone, match="--undelete"):
        await import_user(services, read_export(text))
    assert not any((await _leftovers(services, graph_server, user, threads)).values())

    t0 = time.perf_counter()
    report = await import_user(services, read_export(text), undelete=True)
    took = time.perf_counter() - t0
    assert report.threads_restored == len(threads) and report.threads_unchanged == 0
    assert report.memories_created == len(before["memories"])
    assert report.graph_relations == len(before["graph"]["relations"])
    assert report.tombstones_lifted == 1 + len(threads)  # the user's, each thread's
    after = await export_user(services, user)
    assert same(after) == same(before)

    # idempotent: the same file again changes nothing
    again = await import_user(services, read_export(text), undelete=True)
    assert again.threads_restored == 0 and again.threads_unchanged == len(threads)
    assert again.memories_unchanged == len(before["memories"])
    assert again.memories_created == again.memories_updated == again.tombstones_lifted == 0
    assert same(await export_user(services, user)) == same(before)
    assert same(await export_user(services, bystander)) == same(theirs)
    request.config.stash.setdefault(REPORT, []).append(("users import", {
        "document": f"{len(text) / KB:.1f} KB, {len(threads)} threads, "
                    f"{len(before['memories'])} memories, "
                    f"{len(before['graph']['relations'])} relations",
        "import after delete": f"{took * 1000:.0f} ms",
    }))  # fmt: skip

    # the thread resumes: the next turn's prompt holds the restored summary and messages
    await assert_resumes(services, user, threads[0], before["threads"])

    # and a restored user is deleted as finally as any other
    await delete_user(services, user)
    assert not any((await _leftovers(services, graph_server, user, threads)).values())


async def assert_resumes(
    services: Services, user: str, thread: str, exported: list[dict[str, Any]]
) -> None:
    old = next(t for t in exported if t["thread_id"] == thread)
    model = ScriptedChatModel()
    runner = TurnRunner(dataclasses.replace(services, _chat_model=model))
    reply = await runner.invoke(user, thread, [{"type": "human", "content": "what now?"}],
                                strategy="summary_buffer")  # fmt: skip
    await runner.drain()
    assert reply["messages"][-1].content == "echo: what now?"
    prompt = "\n".join(m.text for m in model.chats[0] if isinstance(m, BaseMessage))
    assert old["summary"] in prompt, prompt
    assert old["messages"][-1]["content"] in prompt, prompt
    values = (await services.state_graph().aget_state(
        {"configurable": {"thread_id": thread_key(user, thread)}}
    )).values  # fmt: skip
    ids = [m.id for m in values["messages"]]
    assert ids[: len(old["messages"])] == [m["id"] for m in old["messages"]]
    assert [m.text for m in values["messages"][-2:]] == ["what now?", "echo: what now?"]
    assert values["turn"] == old["turns"] + 1


async def test_round_trip_over_http_into_a_new_account(
    served: Served, graph_server: EmbeddedGraphServer
) -> None:
    """``GET /me/export``, ``DELETE /me``, then the export brought into a new account with
    ``POST /me/import``: the same state under the new id, twice, and it resumes."""
    services = served.services
    user, key = await new_key(services, "imh")
    _bystander, other_key = await new_key(services, "imb")
    threads = await populate(served, key)
    await populate(served, other_key, threads=1)
    async with httpx.AsyncClient(base_url=served.url, timeout=120) as http:
        theirs = (await http.get("/me/export", headers=auth(other_key))).json()
        res = await http.get("/me/export", headers=auth(key))
        assert res.status_code == 200, res.text
        before = res.json()
        assert_full(before)
        assert (await http.delete("/me", headers=auth(key))).status_code == 200
        assert (await http.post("/me/import", json=before, headers=auth(key))).status_code == 401

        new_user, new_key_ = await new_key(services, "imn")
        res = await http.post("/me/import", json=before, headers=auth(new_key_))
        assert res.status_code == 200, res.text
        report = res.json()
        assert report["user_id"] == new_user and report["source_user_id"] == user
        assert report["threads_restored"] == len(threads) and report["tombstones_lifted"] == 0
        expected = json.loads(as_json(same(before)).replace(user, new_user))
        after = (await http.get("/me/export", headers=auth(new_key_))).json()
        assert same(after) == expected
        # provenance follows the data: facts name the new account's threads
        assert all(r["source_thread"].startswith(f"{new_user}/")
                   for r in after["graph"]["relations"])  # fmt: skip

        res = await http.post("/me/import", json=before, headers=auth(new_key_))
        assert res.status_code == 200, res.text
        assert res.json()["threads_unchanged"] == len(threads)
        assert res.json()["memories_unchanged"] == len(before["memories"])
        assert same((await http.get("/me/export", headers=auth(new_key_))).json()) == expected
        assert same((await http.get("/me/export", headers=auth(other_key))).json()) == same(theirs)

        # the restored thread resumes over HTTP
        res = await http.post("/agent/invoke", json=body(threads[0], "and now?"),
                              headers=auth(new_key_))  # fmt: skip
        assert res.status_code == 200, res.text
        await served.app.state.runner.drain()
        shown = (await http.get(f"/api/threads/{threads[0]}", headers=auth(new_key_))).json()
        old = next(t for t in before["threads"] if t["thread_id"] == threads[0])
        assert shown["turns"] == old["turns"] + 1
    # the deleted account stays deleted: nothing came back under its id
    assert not any((await _leftovers(services, graph_server, user, threads)).values())


async def test_a_conflicting_thread_is_409_and_nothing_is_written(served: Served) -> None:
    services = served.services
    mine_id, key = await new_key(services, "imc")
    source, source_key = await new_key(services, "ims")
    shared = f"im-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=served.url, timeout=120) as http:
        for k, text in ((key, "mine: I like tea"), (source_key, "theirs: I like coffee")):
            res = await http.post("/agent/invoke", json=body(shared, text), headers=auth(k))
            assert res.status_code == 200, res.text
        await served.app.state.runner.drain()
        await populate(served, source_key)  # more threads, memories and facts in the file
        doc = (await http.get("/me/export", headers=auth(source_key))).json()
        assert len(doc["threads"]) == 3 and doc["memories"]
        mine = (await http.get("/me/export", headers=auth(key))).json()
        res = await http.post("/me/import", json=doc, headers=auth(key))
        assert res.status_code == 409, res.text
        assert shared in res.json()["detail"] and "nothing was imported" in res.json()["detail"]
        assert same((await http.get("/me/export", headers=auth(key))).json()) == same(mine)
    # the CLI's path refuses the same way
    with pytest.raises(Conflict, match=shared):
        await import_user(services, ExportDocument.model_validate(doc), user_id=mine_id)
    assert same(await export_user(services, mine_id)) == same(mine)
    assert same(await export_user(services, source)) == same(doc)


def _valid(user: str) -> dict[str, Any]:
    """A small valid document, to spoil one way at a time."""
    return {
        "user_id": user, "exported_at": "2025-01-01T00:00:00+00:00",
        "threads": [{"thread_id": "ok-thread", "title": "t",
                     "created_at": "2025-01-01T00:00:00+00:00",
                     "updated_at": "2025-01-01T00:00:00+00:00", "summary": "", "turns": 1,
                     "messages": [{"id": "m1", "type": "human", "content": "hi"},
                                  {"id": "m2", "type": "ai", "content": "hello"}]}],
        "memories": [{"id": "mem1", "user_id": user, "text": "The user likes tea",
                      "kind": "fact", "importance": 0.5, "event_at": None,
                      "created_at": "2025-01-01T00:00:00+00:00",
                      "last_seen_at": "2025-01-01T00:00:00+00:00", "provenance": [],
                      "metadata": {}, "subject": None, "seen_count": 1, "context": None}],
        "graph": {"entities": [{"name": "user", "display": "user", "norm_name": "user",
                                "created_at": 1},
                               {"name": "tea", "display": "tea", "norm_name": "tea",
                                "created_at": 1}],
                  "relations": [{"id": "r1", "subject": "user", "subject_display": "user",
                                 "predicate": "likes", "object": "tea",
                                 "object_display": "tea", "confidence": 0.9, "created_at": 1,
                                 "valid_from": 1, "invalid_at": None, "source_thread": None,
                                 "source_message": None}]},
        "graph_outbox": 0,
    }  # fmt: skip


MARKER = "SpoiltMarker"


def _spoilt(user: str) -> dict[str, Any]:
    """Documents each wrong in one way (the key names the way)."""
    cases: dict[str, Any] = {}

    def case(name: str, change: Any) -> None:
        doc = _valid(user)
        change(doc)
        cases[name] = doc

    case("bad user id", lambda d: d.update(user_id=f"no spaces {MARKER}"))
    case("bad thread id", lambda d: d["threads"][0].update(thread_id=f"{MARKER}/x"))
    case("bad memory id", lambda d: d["memories"][0].update(id=f"{MARKER}.x"))
    case("unknown key", lambda d: d.update({f"<{MARKER}>": 1}))
    case("no user id", lambda d: d.pop("user_id"))
    case("threads not a list", lambda d: d.update(threads={"a": 1}))
    case("message type", lambda d: d["threads"][0]["messages"][0].update(type="tool"))
    case("naive time", lambda d: d["threads"][0].update(created_at="2025-01-01T00:00:00"))
    case("importance", lambda d: d["memories"][0].update(importance=2))
    case("memory kind", lambda d: d["memories"][0].update(kind=MARKER))
    case("memory of another user", lambda d: d["memories"][0].update(user_id="someone-else"))
    case("twice the thread", lambda d: d["threads"].append(d["threads"][0]))
    case("twice the memory", lambda d: d["memories"].append(d["memories"][0]))
    case("twice a message", lambda d: d["threads"][0]["messages"].append(
        d["threads"][0]["messages"][0]))  # fmt: skip
    case("missing entity", lambda d: d["graph"]["entities"].pop())
    case("NUL in memory", lambda d: d["memories"][0].update(text=f"tea\x00{MARKER}"))
    case("negative time", lambda d: d["graph"]["relations"][0].update(created_at=-5))
    return cases


async def test_bad_documents_are_refused_before_any_write(served: Served) -> None:
    services = served.services
    user, key = await new_key(services, "imv")
    empty = same(await export_user(services, user))
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        # the valid one goes in (so the spoilt ones fail for their one fault)
        probe, probe_key = await new_key(services, "imp")
        res = await http.post("/me/import", json=_valid(probe), headers=auth(probe_key))
        assert res.status_code == 200, res.text
        for raw in (b"{not json", b"[]", b'"text"', b"null", b"{}", b"", b"\xff\xfe"):
            res = await http.post("/me/import", content=raw, headers=auth(key))
            assert res.status_code in (400, 422), (raw, res.status_code, res.text)
            with pytest.raises(InvalidInput, match="not a valid export document"):
                read_export(raw)
        for name, doc in _spoilt(user).items():
            res = await http.post("/me/import", json=doc, headers=auth(key))
            assert res.status_code == 422, (name, res.status_code, res.text)
            assert MARKER not in res.text, (name, res.text)
            with pytest.raises(InvalidInput) as caught:
                read_export(as_json(doc))
            assert MARKER not in str(caught.value), (name, caught.value)
    assert same(await export_user(services, user)) == empty


async def test_the_import_cap_counts_bytes_after_the_key(served: Served) -> None:
    """Up to ``MNEMOGRAPH_IMPORT_MAX_BYTES`` (1 MB here) on ``/me/import`` only; no key is a
    401 before the body whatever its size; over the cap is a 413, declared or chunked."""
    services = served.services
    user, key = await new_key(services, "imk")
    big = _valid(user)
    big["threads"][0]["messages"] = [
        {"id": f"m{i}", "type": "human" if i % 2 == 0 else "ai", "content": f"{i} " + "x" * 60_000}
        for i in range(10)
    ]  # ~600 KB: over the 256 KB of every other route, under this cap
    payload = as_json(big).encode()
    assert 512 * KB < len(payload) < IMPORT_CAP
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        json_type = {"content-type": "application/json"}
        res = await http.post("/me/import", content=payload, headers=json_type)
        assert res.status_code == 401, res.text
        res = await http.post("/api/threads", content=payload, headers={**json_type, **auth(key)})
        assert res.status_code == 413, res.text  # the other routes keep 256 KB
        empty = same(await export_user(services, user))
        res = await http.post("/me/import", content=payload, headers={**json_type, **auth(key)})
        assert res.status_code == 200, res.text
        assert res.json()["threads_restored"] == 1
        restored = same(await export_user(services, user))
        assert restored != empty

        over = b"x" * (IMPORT_CAP + 1)
        res = await http.post("/me/import", content=over, headers={**json_type, **auth(key)})
        assert res.status_code == 413, res.text
        assert str(IMPORT_CAP) in res.json()["detail"]
    for headers, status in (({}, 401), ({"Authorization": "Bearer mg_wrong"}, 401),
                            (auth(key), 413)):  # fmt: skip
        code, answer, sent, _s = await chunked_post(
            served.url, "/me/import", total=3 * IMPORT_CAP, headers=headers
        )
        assert code == status, (headers, code, answer[:200])
        assert sent < 3 * IMPORT_CAP, "the server read the whole body before answering"
    assert same(await export_user(services, user)) == restored


async def test_retired_thread_ids_come_back_only_by_undelete(
    served: Served, graph_server: EmbeddedGraphServer
) -> None:
    """A wipe that keeps the account retires the thread ids: ``POST /me/import`` refuses
    them (409, nothing written), the CLI's ``--undelete`` lifts exactly their tombstones."""
    services = served.services
    user, key = await new_key(services, "imr")
    threads = await populate(served, key)
    before = await export_user(services, user)
    await delete_user(services, user, keep_account=True)
    wiped = same(await export_user(services, user))
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        res = await http.post("/me/import", json=before, headers=auth(key))
        assert res.status_code == 409, res.text
        assert "retired" in res.json()["detail"] and "--undelete" in res.json()["detail"]
    with pytest.raises(Conflict, match="retired"):
        await import_user(services, read_export(as_json(before)))
    assert same(await export_user(services, user)) == wiped
    async with services.postgres().connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM mnemo_deleted_threads WHERE user_id = %s", (user,)
        )
        assert (await cur.fetchone() or {"n": 0})["n"] == len(threads)

    report = await import_user(services, read_export(as_json(before)), undelete=True)
    assert report.tombstones_lifted == len(threads)  # the account itself was live
    assert same(await export_user(services, user)) == same(before)
