"""Strategy selection is pure: these pin down exactly what each strategy keeps and folds."""

from __future__ import annotations

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately

from graph.context import Context
from graph.short_term import messages_to_fold, prompt_messages


def convo(turns: int, words: int = 5) -> list[AnyMessage]:
    msgs: list[AnyMessage] = []
    for i in range(turns):
        msgs.append(HumanMessage(content=f"q{i} " + "word " * words, id=f"h{i}"))
        msgs.append(AIMessage(content=f"a{i} " + "word " * words, id=f"a{i}"))
    return msgs


def ids(msgs: list[AnyMessage]) -> list[str | None]:
    return [m.id for m in msgs]


def test_buffer_keeps_everything() -> None:
    msgs = [*convo(6), HumanMessage(content="new", id="hn")]
    assert ids(prompt_messages(msgs, Context(strategy="buffer"))) == ids(msgs)
    assert messages_to_fold(msgs, Context(strategy="buffer")) == []


def test_window_keeps_last_k_exchanges_including_the_new_question() -> None:
    msgs = [*convo(6), HumanMessage(content="new", id="hn")]
    kept = prompt_messages(msgs, Context(strategy="window", window_k=3))
    assert ids(kept) == ["h4", "a4", "h5", "a5", "hn"]
    assert messages_to_fold(msgs, Context(strategy="window")) == []


def test_tokens_trims_to_budget_and_starts_on_a_question() -> None:
    msgs = [*convo(20, words=20), HumanMessage(content="new", id="hn")]
    kept = prompt_messages(msgs, Context(strategy="tokens", max_tokens=120))
    assert kept[-1].id == "hn"
    assert isinstance(kept[0], HumanMessage)
    assert count_tokens_approximately(kept) <= 120
    assert len(kept) < len(msgs)


def test_tokens_never_drops_an_oversized_question() -> None:
    big = HumanMessage(content="word " * 500, id="big")
    assert ids(prompt_messages([big], Context(strategy="tokens", max_tokens=20))) == ["big"]


def test_summary_shows_last_exchange_and_folds_the_rest() -> None:
    msgs = convo(5)
    ctx = Context(strategy="summary")
    assert ids(prompt_messages([*msgs, HumanMessage(content="n", id="hn")], ctx)) == [
        "h4",
        "a4",
        "hn",
    ]
    assert ids(messages_to_fold(msgs, ctx)) == ids(msgs[:8])


def test_summary_buffer_folds_only_past_the_trigger_down_to_the_buffer() -> None:
    ctx = Context(strategy="summary_buffer", summary_trigger_tokens=200, buffer_tokens=60)
    small = convo(2)
    assert messages_to_fold(small, ctx) == []
    msgs = convo(12)
    assert count_tokens_approximately(msgs) > 200
    fold = messages_to_fold(msgs, ctx)
    kept = msgs[len(fold) :]
    assert ids(fold) == ids(msgs[: len(fold)])
    assert isinstance(kept[0], HumanMessage)
    assert count_tokens_approximately(kept) <= 60 or len(kept) == 2
    assert len(kept) >= 2
