"""Memory work after the reply: off the caller's path, yet never lost."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from graph.context import Context
from mnemograph.runner import TurnRunner
from mnemograph.services import Services
from stores.ids import thread_key
from stores.models.fake_llm import EchoChatModel
from tests.fakes import ScriptedChatModel


def gated_memory_model(gate: asyncio.Event) -> ScriptedChatModel:
    """Echo replies; memory extraction answers one item, but only once the gate opens."""

    async def one_item(messages: list[BaseMessage]) -> dict[str, Any]:
        await gate.wait()
        prompt = next(m for m in reversed(messages) if isinstance(m, HumanMessage)).text
        said = re.search(r": user: (.*)", prompt)
        assert said is not None, prompt
        item = {"type": "fact", "text": "User " + said.group(1).strip(), "importance": 0.8}
        return {"items": [item]}

    return ScriptedChatModel(tool_replies={"ExtractedMemories": one_item})


async def die_after_reply(
    runner: TurnRunner, services: Services, uid: str, tid: str, text: str
) -> None:
    """Run a turn as a process that dies once the reply is durable: stop at the first
    post-reply step, leaving the graph with work owed."""
    stream: Any = runner.graph.astream(
        {"messages": [HumanMessage(content=text)]},
        runner.config(thread_key(uid, tid)),
        context=Context(user_id=uid, services=services),
        stream_mode="tasks",
        durability="sync",
    )
    async for event in stream:
        if event.get("name") == "summarize" and "input" in event:
            break
    await stream.aclose()


async def test_reply_returns_before_memory_work(services: Services, uid: str, tid: str) -> None:
    gate = asyncio.Event()
    services.set_chat_model(gated_memory_model(gate))
    runner = TurnRunner(services)
    try:
        result = await asyncio.wait_for(
            runner.invoke(uid, tid, [{"type": "human", "content": "keeps bees in Porto"}]),
            timeout=60,
        )
        assert result["messages"][-1].text == "echo: keeps bees in Porto"
        assert services.memory is not None
        assert await services.memory.list(uid) == []  # extraction is still waiting
        assert services.threads is not None
        assert [t for t, _ in await services.threads.unfinished()].count(thread_key(uid, tid)) == 1
        gate.set()
        await runner.drain()
        items = await services.memory.list(uid)
        assert [i.text for i in items] == ["User keeps bees in Porto"]
        assert thread_key(uid, tid) not in [t for t, _ in await services.threads.unfinished()]
    finally:
        gate.set()
        services.set_chat_model(EchoChatModel())


async def test_unfinished_run_is_completed_after_a_crash(
    services: Services, uid: str, tid: str
) -> None:
    """A process that died after the reply left the run mid-graph; recovery finishes it."""
    gate = asyncio.Event()
    gate.set()
    services.set_chat_model(gated_memory_model(gate))
    runner = TurnRunner(services)
    assert services.threads is not None
    await services.threads.claim(uid, tid)
    await services.threads.begin_run(thread_key(uid, tid), {"strategy": "buffer"})
    # Run the turn as the dead process did, and stop it where the reply was durable.
    await die_after_reply(runner, services, uid, tid, "grows tomatoes")
    snapshot = await runner.graph.aget_state(runner.config(thread_key(uid, tid)))
    assert snapshot.next  # the graph knows work is owed
    assert snapshot.values["messages"][-1].text == "echo: grows tomatoes"
    assert services.memory is not None
    assert await services.memory.list(uid) == []

    resumed = await runner.recover_all()
    assert resumed >= 1
    snapshot = await runner.graph.aget_state(runner.config(thread_key(uid, tid)))
    assert not snapshot.next
    assert [i.text for i in await services.memory.list(uid)] == ["User grows tomatoes"]
    assert thread_key(uid, tid) not in [t for t, _ in await services.threads.unfinished()]
    services.set_chat_model(EchoChatModel())


async def test_next_turn_completes_owed_work_first(services: Services, uid: str, tid: str) -> None:
    gate = asyncio.Event()
    gate.set()
    services.set_chat_model(gated_memory_model(gate))
    runner = TurnRunner(services)
    assert services.threads is not None
    await services.threads.claim(uid, tid)
    await services.threads.begin_run(thread_key(uid, tid), {})
    await die_after_reply(runner, services, uid, tid, "speaks Welsh")
    await runner.invoke(uid, tid, [{"type": "human", "content": "plays chess"}])
    await runner.drain()
    assert services.memory is not None
    texts = sorted(i.text for i in await services.memory.list(uid))
    assert texts == ["User plays chess", "User speaks Welsh"]
    state = await runner.graph.aget_state(runner.config(thread_key(uid, tid)))
    assert [m.text for m in state.values["messages"]] == [
        "speaks Welsh", "echo: speaks Welsh", "plays chess", "echo: plays chess",
    ]  # fmt: skip
    services.set_chat_model(EchoChatModel())


async def test_reply_waits_for_its_checkpoint_to_commit(
    services: Services, uid: str, tid: str
) -> None:
    """Checkpoints are written while the next step runs (async durability), so the memory
    work may already be running when the reply's checkpoint is still in flight. The caller
    must not get the reply before that checkpoint is committed."""
    from graph.builder import build_graph
    from stores.postgres.savers import PooledPostgresSaver

    gate = asyncio.Event()
    held: list[str] = []

    class SlowReplySaver(PooledPostgresSaver):
        async def aput(self, config: Any, checkpoint: Any, metadata: Any, versions: Any) -> Any:
            if "branch:to:summarize" in (checkpoint.get("updated_channels") or ()):
                held.append(checkpoint["id"])
                await gate.wait()
            return await super().aput(config, checkpoint, metadata, versions)

    model = ScriptedChatModel()  # its ``asked`` lists the tool calls made
    services.set_chat_model(model)
    assert services.pool is not None
    saver = SlowReplySaver(conn=services.pool)
    runner = TurnRunner(services, build_graph(saver, services.store))
    turn = asyncio.ensure_future(
        runner.invoke(uid, tid, [{"type": "human", "content": "hello there"}])
    )
    for _ in range(200):  # until the reply's checkpoint is being written
        if held:
            break
        await asyncio.sleep(0.02)
    assert held, "the reply's checkpoint was never written"
    await asyncio.sleep(0.2)
    assert not turn.done()  # the reply exists in memory but is not durable yet
    stored = await PooledPostgresSaver(conn=services.pool).aget_tuple(
        runner.config(thread_key(uid, tid))
    )
    assert stored is None or stored.checkpoint["id"] != held[0]
    assert model.asked == []  # memory work waits for the reply's write, never competes
    gate.set()
    result = await asyncio.wait_for(turn, timeout=30)
    assert result["messages"][-1].text == "echo: hello there"
    stored = await PooledPostgresSaver(conn=services.pool).aget_tuple(
        {
            "configurable": {
                "thread_id": thread_key(uid, tid),
                "checkpoint_ns": "",
                "checkpoint_id": held[0],
            }
        }
    )
    assert stored is not None  # committed before the caller heard back
    await runner.drain()
    assert "ExtractedMemories" in model.asked  # and then it ran
    services.set_chat_model(EchoChatModel())
