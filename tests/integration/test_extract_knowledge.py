"""Extraction: normalization rules, grounding, the node's failure modes, and the whole loop
extraction -> graph -> recall across two threads of one user."""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime

from graph.builder import build_graph
from graph.context import Context
from graph.facts import (
    SINGLE_VALUED,
    USER_ENTITY,
    ExtractedTriples,
    Triple,
    normalize_entity,
    normalize_predicate,
)
from graph.structured import structured
from mnemograph.services import Services
from nodes.call_model import call_model
from nodes.extract_knowledge import extract_knowledge, extract_triples
from nodes.load_memory import load_memory
from stores.knowledge.bolt import GraphStore
from stores.knowledge.facts import KnowledgeGraph
from stores.knowledge.mentions import mentioned_entities
from stores.knowledge.outbox import GraphOutbox
from stores.knowledge.recall import FactRecall
from stores.knowledge.rules import format_facts, prepare
from stores.settings import Settings
from tests.kg_fakes import KeywordEmbeddings, rule_script, triple_model


def spo(facts: Any) -> set[tuple[str, str, str]]:
    return {(f["subject"], f["predicate"], f["object"]) for f in facts}


def make_services(graph: Any, outbox: Any, model: Any, **extra: Any) -> Services:
    services = Services(settings=Settings(model="fake"))
    services.set_chat_model(model)
    for key, value in extra.items():
        setattr(services, key, value)
    services.facts = KnowledgeGraph(graph, outbox, services.embeddings)
    return services


async def recall_facts(
    graph: GraphStore, embeddings: Any, user: str, text: str, **kw: Any
) -> list[Any]:
    """One recall on fresh caches."""
    return await FactRecall(graph, embeddings).recall(user, text, **kw)


def extractor(model: Any) -> Any:
    return structured(model, ExtractedTriples)


def runtime(user: str, services: Services) -> Runtime[Context]:
    return Runtime(context=Context(user_id=user, services=services))


# --- pure rules ---------------------------------------------------------------------------
def test_pronouns_and_entities_normalize_to_one_user_node() -> None:
    for word in ("I", " me ", "My", "MYSELF", "mine", "the user", "User"):
        assert normalize_entity(word) == USER_ENTITY
    assert normalize_entity("my  Sister") == "user's sister"
    assert normalize_entity("  The   Eiffel Tower. ") == "eiffel tower"
    assert normalize_entity('"Berlin"') == "berlin"
    assert normalize_entity(normalize_entity("my Sister")) == "user's sister"  # idempotent


def test_predicates_snake_case_with_vocabulary_and_free_predicates() -> None:
    assert normalize_predicate("Lives In") == "lives_in"
    assert normalize_predicate("resides_in") == "lives_in"
    assert normalize_predicate("worksFor") == "works_at"
    assert normalize_predicate("is married to") == "married_to"
    assert normalize_predicate("years old") == "age"
    assert normalize_predicate("has_age") == "age"
    assert normalize_predicate("Collects vintage STAMPS!") == "collects_vintage_stamps"
    assert normalize_predicate("  --  ") == ""
    assert {"lives_in", "works_at", "married_to", "age"} <= SINGLE_VALUED


def test_prepare_dedupes_and_keeps_last_single_valued_value() -> None:
    rows = prepare(
        [
            {"subject": "I", "predicate": "live in", "object": "Paris"},
            {"subject": "me", "predicate": "lives_in", "object": "Berlin", "confidence": 95},
            {"subject": "I", "predicate": "likes", "object": "tea", "confidence": 0.4},
            {"subject": "i", "predicate": "Likes", "object": "Tea", "confidence": 0.8},
            {"subject": "I", "predicate": "is", "object": "me"},  # self loop
            {"subject": "", "predicate": "likes", "object": "x"},
        ]
    )
    assert [(r["s"], r["p"], r["o"]) for r in rows] == [
        ("user", "lives_in", "berlin"),
        ("user", "likes", "tea"),
    ]
    assert rows[0]["confidence"] == 0.95 and rows[1]["confidence"] == 0.8


def test_format_facts_respects_token_budget() -> None:
    facts = [
        {"subject": "user", "predicate": "likes", "object": f"thing number {i}", "valid_from": 0}
        for i in range(50)
    ]
    lines = format_facts(facts, 40)
    assert 1 <= len(lines) < 10 and lines[0] == "user likes thing number 0"
    assert format_facts(facts, 0) == []


def test_mentions_match_whole_normalized_names() -> None:
    names = ["user", "user's sister", "acme corp", "paris", "art"]
    found = mentioned_entities("Does my sister still work at ACME Corp in Paris?", names)
    assert set(found) == {"user", "user's sister", "acme corp", "paris"}  # not "art"


# --- extraction with a scripted tool-calling model ----------------------------------------
async def test_extract_keeps_only_grounded_confident_user_facts() -> None:
    def script(text: str) -> list[dict[str, Any]]:
        return [
            {"subject": "I", "predicate": "lives in", "object": "Berlin", "confidence": 0.9},
            # The assistant's suggestion, never said by the user:
            {"subject": "I", "predicate": "likes", "object": "Museum Island", "confidence": 0.9},
            {"subject": "I", "predicate": "works at", "object": "Acme", "confidence": 0.2},
        ]

    model = triple_model(script)
    triples = await extract_triples(extractor(model), "I live in Berlin and work at Acme, I think.")
    assert [(t.subject, t.predicate, t.object) for t in triples] == [("I", "lives in", "Berlin")]
    prompt = model.calls[-1]
    assert "<user>\nI live in Berlin" in str(prompt[-1].content)


async def test_extract_applies_the_redaction_hook() -> None:
    def script(text: str) -> list[dict[str, Any]]:
        return [{"subject": "my email", "predicate": "is", "object": "bob@example.com"}]

    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace("bob@example.com", "[EMAIL]")

    triples = await extract_triples(
        extractor(triple_model(script)), "my email is bob@example.com", redact=redact
    )
    assert [t.object for t in triples] == ["[EMAIL]"]
    assert "my email is bob@example.com" in seen


async def test_node_writes_to_graph_with_provenance(graph_store: GraphStore, kg_user: str) -> None:
    services = make_services(graph_store, None, triple_model(rule_script))
    human = HumanMessage(content="I live in Oslo and I like skiing", id="h-1")
    state: Any = {"messages": [human, AIMessage(content="Cool", id="a-1")], "turn": 3}
    assert await extract_knowledge(state, runtime(kg_user, services)) == {
        "extracted": {
            "turn": 3,
            "triples": [
                {"subject": "I", "predicate": "live in", "object": "Oslo", "confidence": 0.9,
                 "outcome": "stored"},
                {"subject": "I", "predicate": "likes", "object": "skiing", "confidence": 0.9,
                 "outcome": "stored"},
            ],
        }
    }  # fmt: skip
    facts = await graph_store.current_facts(kg_user)
    assert spo(facts) == {("user", "lives_in", "oslo"), ("user", "likes", "skiing")}
    assert {f["source_message"] for f in facts} == {"h-1"}


async def test_node_never_raises(
    dead_graph_store: GraphStore, graph_store: GraphStore, outbox: GraphOutbox, kg_user: str
) -> None:
    state: Any = {"messages": [HumanMessage(content="I live in Rome", id="h"), AIMessage("ok")]}
    broken = triple_model(rule_script, fail=True)
    update = await extract_knowledge(
        state, runtime(kg_user, make_services(graph_store, outbox, broken))
    )
    assert update == {
        "extracted": {
            "turn": 0, "triples": [], "skipped": {"triples": "extraction failed: RuntimeError"}
        }
    }  # fmt: skip
    assert await graph_store.current_facts(kg_user) == []

    def outcomes(update: dict[str, Any]) -> list[tuple[str, str, str]]:
        triples = update["extracted"]["triples"]
        return [(t["object"], t["outcome"], t.get("reason", "")) for t in triples]

    # Graph down: the triples are queued, the turn goes on.
    services = make_services(dead_graph_store, outbox, triple_model(rule_script))
    update = await extract_knowledge(state, runtime(kg_user, services))
    assert outcomes(update) == [
        ("Rome", "queued", "graph server unavailable: queued in the outbox for replay")
    ]
    assert await outbox.count(kg_user) == 1
    # Graph down and no outbox: logged and dropped, still no exception.
    services = make_services(dead_graph_store, None, triple_model(rule_script))
    update = await extract_knowledge(state, runtime(kg_user, services))
    assert outcomes(update) == [("Rome", "dropped", "graph server unavailable and no outbox")]
    # Nothing worth extracting: the model is not called at all.
    quiet = triple_model(rule_script)
    small_talk: Any = {"messages": [HumanMessage(content="thanks!"), AIMessage("you're welcome")]}
    update = await extract_knowledge(
        small_talk, runtime(kg_user, make_services(graph_store, outbox, quiet))
    )
    assert update["extracted"]["skipped"] == {
        "triples": "nothing stated (a question or a pleasantry)"
    }
    assert quiet.calls == []


# --- the whole loop ------------------------------------------------------------------------
async def test_extraction_storage_recall_across_two_threads(
    graph_store: GraphStore, kg_user: str
) -> None:
    model = triple_model(rule_script)
    services = make_services(graph_store, None, model)
    graph = build_graph(
        InMemorySaver(),
        pipeline=[
            ("load_memory", load_memory),
            ("call_model", call_model),
            ("extract_knowledge", extract_knowledge),
        ],
    )
    ctx = Context(user_id=kg_user, services=services)

    async def say(thread: str, text: str) -> None:
        await graph.ainvoke(
            {"messages": [HumanMessage(content=text, id=uuid.uuid4().hex)]},
            {"configurable": {"thread_id": thread}},
            context=ctx,
        )

    await say("thread-1", "I live in Paris. I work at Acme. Acme is based in London.")
    await say("thread-1", "Actually I moved to Berlin last month.")
    facts = await graph_store.current_facts(kg_user)
    assert ("user", "lives_in", "berlin") in spo(facts)
    assert ("user", "lives_in", "paris") not in spo(facts)
    assert {f["source_thread"] for f in facts} == {"thread-1"}

    model.calls.clear()
    await say("thread-2", "Any tips for where I live?")
    chat_prompt = next(p for p in model.calls if "Known facts" in str(p[0].content))
    system = str(chat_prompt[0].content)
    assert "user lives_in Berlin" in system
    assert "Paris" not in system  # the invalidated fact is never recalled


async def test_recall_semantic_match_hops_and_budget(graph_store: GraphStore, kg_user: str) -> None:
    await graph_store.upsert_triples(
        kg_user,
        [
            Triple(subject="I", predicate="works_at", object="Acme", confidence=0.9),
            Triple(subject="Acme", predicate="located_in", object="London", confidence=0.9),
            Triple(subject="Bob", predicate="likes", object="golf", confidence=0.9),
        ],
        thread_id="t",
        message_id="m",
        at_ms=1000,
    )
    recalled = await recall_facts(
        graph_store,
        KeywordEmbeddings(),
        kg_user,
        "How is the company doing?",
        hops=1,
        token_budget=200,
    )
    texts = [r["text"] for r in recalled]
    assert any("Acme located_in London" in t for t in texts)  # found by embedding only
    assert not any("golf" in t for t in texts)
    assert all(r["kind"] == "fact" and r["source"].startswith("kg:") for r in recalled)

    two = await recall_facts(graph_store, None, kg_user, "What do I do?", hops=2, token_budget=200)
    assert [r["text"].split(" (")[0] for r in two] == [
        "user works_at Acme",
        "Acme located_in London",
    ]
    assert two[0]["score"] > two[1]["score"]
    first_cost = count_tokens_approximately([two[0]["text"]])
    tiny = await recall_facts(
        graph_store, None, kg_user, "What do I do?", hops=2, token_budget=first_cost + 1
    )
    assert [r["text"] for r in tiny] == [two[0]["text"]]
    assert await recall_facts(graph_store, None, kg_user + "-nobody", "What do I do?") == []


def test_mention_index_agrees_with_scanning_every_name() -> None:
    """The span index must find exactly what testing each name against the message finds."""
    import random

    from stores.knowledge.mentions import entity_key, message_key

    def scan(text: str, names: list[str]) -> list[str]:
        message = f" {message_key(text)} "
        found = [n for n in names if len(key := entity_key(n)) > 1 and f" {key} " in message]
        return found + (["user"] if " user " in message and "user" not in found else [])

    rng = random.Random(4)
    words = ["ana", "tea", "my", "I", "sister", "acme", "corp", "user's", "x", "café", "new york"]
    for _ in range(500):
        names = list(
            dict.fromkeys(" ".join(rng.choices(words, k=rng.randint(1, 3))) for _ in range(20))
        )
        text = " ".join(rng.choices([*words, "?", "'s"], k=rng.randint(0, 12)))
        assert mentioned_entities(text, names) == scan(text, names), (text, names)


async def test_entity_names_stay_current_without_rereading(
    graph_store: GraphStore, kg_user: str, monkeypatch: Any
) -> None:
    """Recall reads the name list whole once; later entities arrive incrementally: this
    process's writes at once, other processes' writes on the next incremental check."""
    full_reads: list[str] = []
    whole = graph_store.entity_names

    async def counting(user_id: str, **kw: Any) -> list[str]:
        full_reads.append(user_id)
        return await whole(user_id, **kw)

    monkeypatch.setattr(graph_store, "entity_names", counting)
    services = make_services(graph_store, None, triple_model(rule_script))
    assert services.facts is not None and services.facts.recaller is not None
    recaller = services.facts.recaller

    async def ask(text: str) -> list[str]:
        hits = await recaller.recall(kg_user, text, hops=1, token_budget=400)
        return [h["text"] for h in hits]

    say: Any = {"thread_id": "t", "message_id": "m", "at_ms": 1_000}
    await graph_store.upsert_triples(
        kg_user, [Triple(subject="I", predicate="likes", object="tea")], **say
    )
    assert any("tea" in t for t in await ask("Do I still like tea?"))
    assert full_reads == [kg_user]

    # Written by this process (the extraction node): visible on the very next recall.
    state: Any = {"messages": [HumanMessage(content="I work at Globex", id="h"), AIMessage("ok")]}
    await extract_knowledge(state, runtime(kg_user, services))
    assert any("globex" in t.casefold() for t in await ask("How is Globex?"))

    # Written elsewhere: found by the incremental check once it is due, still no full read.
    now_ms = int(__import__("time").time() * 1000)
    await graph_store.upsert_triples(
        kg_user,
        [Triple(subject="Zora", predicate="knows", object="Ivo")],
        **{**say, "at_ms": now_ms},
    )
    assert await ask("What about Zora?") == []  # not checked yet: within the TTL
    (await recaller.names(kg_user)).check_at = 0.0
    assert await ask("What about Zora?") == []  # due: answered from the list it has ...
    await recaller.refreshes()  # ... while it refreshes
    assert any("zora" in t.casefold() for t in await ask("What about Zora?"))
    assert full_reads == [kg_user]

    # The periodic full read (which drops deleted names) also runs in the background.
    names = await recaller.names(kg_user)
    names.check_at = names.full_at = 0.0
    await ask("What about Zora?")
    await recaller.refreshes()
    assert full_reads == [kg_user, kg_user]
    assert any("zora" in t.casefold() for t in await ask("What about Zora?"))


async def test_structured_calls_do_not_rebuild_the_json_schema(monkeypatch: Any) -> None:
    """The schema is converted once when the structured runnable is built, not on every call
    (LangChain's tracing metadata would otherwise redo it, ~1 ms of CPU per call)."""
    model = triple_model(rule_script)
    bound = extractor(model)  # built (and converted) here, as on a first turn
    calls: list[str] = []
    original = ExtractedTriples.model_json_schema.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(cls.__name__)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ExtractedTriples, "model_json_schema", classmethod(counting))
    for _ in range(3):
        triples = await extract_triples(bound, "I live in Oslo")
        assert [t.object for t in triples] == ["Oslo"]
    assert calls == []
