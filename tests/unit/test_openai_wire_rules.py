"""The OpenAI door's history rules, exactly: what is new, and when a resent history
contradicts the stored thread."""

from __future__ import annotations

import pytest

from mnemograph.web.routes.openai_compat.wire import (
    ChatMessage,
    default_thread,
    history_conflict,
    split_history,
)
from stores.errors import InvalidInput
from stores.ids import check_id


def msgs(*pairs: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role=r, content=c) for r, c in pairs]


def test_only_user_messages_after_the_last_reply_are_new() -> None:
    split = split_history(msgs(("system", "be brief"), ("user", "a"), ("assistant", "b"),
                               ("user", "c"), ("user", "d")))  # fmt: skip
    assert split.history == [("user", "a"), ("assistant", "b")]
    assert split.new == ["c", "d"]
    assert split_history(msgs(("user", "x"))).history == []


def test_text_parts_are_joined_and_other_parts_refused() -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    assert split_history([ChatMessage(role="user", content=parts)]).new == ["one\ntwo"]
    with pytest.raises(InvalidInput, match="image_url"):
        split_history([ChatMessage(role="user", content=[{"type": "image_url"}])])


@pytest.mark.parametrize(
    "conversation",
    [msgs(("user", "a"), ("assistant", "b")), msgs(("tool", "x"), ("user", "a"))],
)
def test_conversations_that_do_not_end_with_the_user_are_refused(
    conversation: list[ChatMessage],
) -> None:
    with pytest.raises(InvalidInput):
        split_history(conversation)


def test_overlapping_tails_must_match() -> None:
    stored = [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]
    assert history_conflict([], stored) is None
    assert history_conflict(stored, stored) is None
    assert history_conflict(stored[2:], stored) is None  # the client trimmed its context
    assert history_conflict([("user", "z"), ("assistant", "y"), *stored], stored) is None  # folded
    edited = [("user", "a"), ("assistant", "B!"), ("user", "c"), ("assistant", "d")]
    assert "message 1" in (history_conflict(edited, stored) or "")
    regenerated = stored[:2]  # the client dropped the last exchange and asks again
    assert history_conflict(regenerated, stored) is not None
    assert history_conflict([("user", "a"), ("assistant", "b")], []) is not None


def test_default_threads_are_valid_ids_and_per_user() -> None:
    assert check_id("thread id", default_thread("usr_1")) == default_thread("usr_1")
    assert default_thread("usr_1") != default_thread("usr_2")
