"""Whole turns through the compiled graph on the embedded Postgres checkpointer."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.channels import DeltaChannel

from graph.builder import build_graph
from graph.context import Context
from mnemograph.services import Services
from stores.ids import thread_key
from tests.fakes import ScriptedChatModel, numbered_replies, recording_model


async def run_turns(
    services: Services, model: ScriptedChatModel, thread: str, ctx: Context, n: int, words: int = 8
) -> dict[str, Any]:
    services.set_chat_model(model)
    graph = build_graph(services.checkpointer, services.store)
    config: Any = {"configurable": {"thread_id": thread}}
    out: dict[str, Any] = {}
    for i in range(n):
        out = await graph.ainvoke(
            {"messages": [HumanMessage(content=f"message {i} " + "lorem " * words)]},
            config,
            context=ctx,
        )
    return out


def test_messages_use_delta_channel() -> None:
    graph = build_graph()
    assert isinstance(graph.channels["messages"], DeltaChannel)


async def test_summary_buffer_stays_bounded_over_200_turns(
    services: Services, uid: str, tid: str
) -> None:
    model = recording_model()
    ctx = Context(
        user_id=uid,
        strategy="summary_buffer",
        summary_trigger_tokens=300,
        buffer_tokens=120,
        services=services,
    )
    graph = build_graph(services.checkpointer, services.store)
    services.set_chat_model(model)
    config: Any = {"configurable": {"thread_id": tid}}
    sizes = []
    for i in range(200):
        out = await graph.ainvoke(
            {"messages": [HumanMessage(content=f"message {i} " + "lorem " * 8)]},
            config,
            context=ctx,
        )
        sizes.append(len(out["messages"]))
    # bounded by the trigger (about 22 messages here), never by the 400 messages sent
    assert max(sizes[50:]) <= 30, sizes
    assert min(sizes[50:]) >= 2
    state = await graph.aget_state(config)
    assert state.values["turn"] == 200
    assert state.values["summary"].startswith("reply")  # written by the summarizer call
    assert len(state.values["messages"]) <= 30
    # The newest exchange is always kept verbatim.
    assert state.values["messages"][-2].text.startswith("message 199")


async def test_summary_reaches_the_prompt(services: Services, uid: str, tid: str) -> None:
    model = recording_model("r")
    ctx = Context(user_id=uid, strategy="summary", services=services)
    await run_turns(services, model, tid, ctx, 3)
    reply_prompts = [c for c in model.chats if "running summary" not in c[0].text]
    final = reply_prompts[-1]
    assert isinstance(final[0], SystemMessage)
    assert "Summary of the earlier conversation" in final[0].text
    humans = [m.text for m in final if isinstance(m, HumanMessage)]
    assert humans[-1].startswith("message 2") and len(humans) == 2


async def test_window_strategy_prompt_holds_k_exchanges(
    services: Services, uid: str, tid: str
) -> None:
    model = recording_model()
    ctx = Context(user_id=uid, strategy="window", window_k=2, services=services)
    out = await run_turns(services, model, tid, ctx, 6)
    last = model.chats[-1]
    humans = [m.text for m in last if isinstance(m, HumanMessage)]
    assert [h.split()[1] for h in humans] == ["4", "5"]
    # window never folds: the thread keeps its full history
    assert len(out["messages"]) == 12


async def test_strategy_can_change_per_request(services: Services, uid: str, tid: str) -> None:
    model = recording_model()
    await run_turns(
        services, model, tid, Context(user_id=uid, strategy="buffer", services=services), 4
    )
    out = await run_turns(
        services,
        model,
        tid,
        Context(user_id=uid, strategy="window", window_k=1, services=services),
        1,
    )
    humans = [m for m in model.chats[-1] if isinstance(m, HumanMessage)]
    assert len(humans) == 1
    assert len(out["messages"]) == 10


async def test_failed_summarization_loses_nothing(services: Services, uid: str, tid: str) -> None:
    numbered = numbered_replies()

    def boom(messages: Any) -> Any:
        if "running summary" in messages[0].text:
            return RuntimeError("summarizer down")
        return next(numbered)

    model = ScriptedChatModel(replies=boom)
    ctx = Context(user_id=uid, strategy="summary", services=services)
    services.set_chat_model(model)
    graph = build_graph(services.checkpointer, services.store)
    config: Any = {"configurable": {"thread_id": tid}}
    await graph.ainvoke({"messages": [HumanMessage(content="first")]}, config, context=ctx)
    try:
        await graph.ainvoke({"messages": [HumanMessage(content="second")]}, config, context=ctx)
    except RuntimeError:
        pass
    state = await graph.aget_state(config)
    texts = [m.text for m in state.values["messages"]]
    assert "first" in texts and "second" in texts


async def test_next_turn_starts_from_the_remembered_messages(
    services: Services, uid: str, tid: str, monkeypatch: Any
) -> None:
    """The runner hands each thread's final messages to the checkpointer, which serves them
    to the next turn instead of replaying every write since the last snapshot. What it serves
    must equal what Postgres alone rebuilds, and any other checkpoint must still be read."""
    from mnemograph.runner import TurnRunner
    from stores.postgres.savers import PooledPostgresSaver

    saver = services.checkpointer
    assert isinstance(saver, PooledPostgresSaver)
    reads: list[str | None] = []
    original = PooledPostgresSaver.__mro__[1].aget_delta_channel_history

    async def counting(self: Any, *, config: Any, channels: Any) -> Any:
        reads.append(config["configurable"].get("checkpoint_id"))
        return await original(self, config=config, channels=channels)

    monkeypatch.setattr(PooledPostgresSaver.__mro__[1], "aget_delta_channel_history", counting)
    runner = TurnRunner(services)
    ctx: dict[str, Any] = {"strategy": "buffer"}
    for i in range(4):
        await runner.invoke(uid, tid, [{"type": "human", "content": f"note {i}"}], **ctx)
        await runner.drain()
    assert reads == []  # turns 2-4 started from memory (turn 1 had no history)

    cached = await runner.graph.aget_state(runner.config(thread_key(uid, tid)))
    fresh_saver = PooledPostgresSaver(conn=services.pool)  # no memory: replays from Postgres
    fresh = await build_graph(fresh_saver, services.store).aget_state(
        runner.config(thread_key(uid, tid))
    )
    assert reads  # the fresh saver did read
    texts = [m.text for m in fresh.values["messages"]]
    assert [m.text for m in cached.values["messages"]] == texts
    assert texts[-2:] == ["note 3", "echo: note 3"] and len(texts) == 8

    # A state update makes a newer checkpoint the cache never saw: read from Postgres.
    reads.clear()
    await runner.graph.aupdate_state(
        runner.config(thread_key(uid, tid)),
        {"messages": [HumanMessage(content="edited in", id="x1")]},
        as_node="write_memory",
    )
    await runner.invoke(uid, tid, [{"type": "human", "content": "note 4"}], **ctx)
    await runner.drain()
    assert len(reads) == 1
    state = await build_graph(fresh_saver, services.store).aget_state(
        runner.config(thread_key(uid, tid))
    )
    texts = [m.text for m in state.values["messages"]]
    assert texts[-3:] == ["edited in", "note 4", "echo: note 4"] and len(texts) == 11

    # Deleting the thread drops what the process held for it.
    await saver.adelete_thread(thread_key(uid, tid))
    assert not [k for k in saver._replayed if k[0] == thread_key(uid, tid)]
