"""Finding the user's entities in a message by exact words: pure, no I/O.

A message has a few dozen word spans; a user has thousands of entities. The index maps each
entity's match key to its positions in the name list, so looking the spans up costs
microseconds where testing every name against the message cost 1.5 ms at 3.3k names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from graph.facts import FIRST_PERSON, USER_ENTITY, match_key


def message_key(text: str) -> str:
    """The message as space-separated match tokens, first-person words mapped to the user."""
    tokens = re.findall(r"\w+", text.casefold())
    return " ".join(USER_ENTITY if t in FIRST_PERSON else t for t in tokens)


def entity_key(name: str) -> str:
    """An entity's match key; "user's sister" must match "my sister" -> "user sister"."""
    return re.sub(rf"\b{USER_ENTITY} s\b", USER_ENTITY, match_key(name))


class MentionIndex:
    """Entity match keys -> positions in one name list; grows as names are appended."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.by_key: dict[str, list[int]] = {}
        self.size = 0
        self.longest = 0
        self.extend(names)

    def extend(self, names: Iterable[str]) -> None:
        """Index names appended to the list (positions continue from :attr:`size`)."""
        for name in names:
            key = entity_key(name)
            if key and len(key) > 1:
                self.by_key.setdefault(key, []).append(self.size)
                self.longest = max(self.longest, key.count(" ") + 1)
            self.size += 1

    def find(self, tokens: Sequence[str]) -> list[int]:
        """Positions of the names whose key is a run of ``tokens``."""
        hits: set[int] = set()
        for i in range(len(tokens)):
            for j in range(i + 1, min(len(tokens), i + self.longest) + 1):
                hits.update(self.by_key.get(" ".join(tokens[i:j]), ()))
        return sorted(hits)


def mentioned_entities(
    text: str, names: Sequence[str], index: MentionIndex | None = None
) -> list[str]:
    """Entity names that occur as whole words in the message (plus the user, if "I"/"my").

    ``index`` must index exactly ``names``; without one it is built here.
    """
    tokens = message_key(text).split(" ")
    index = index if index is not None else MentionIndex(names)
    found = [names[i] for i in index.find(tokens)]
    if USER_ENTITY in tokens and USER_ENTITY not in found:
        found.append(USER_ENTITY)
    return found
