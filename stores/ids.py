"""Identifier validation shared by the CLI, the server and the stores.

Ids end up in SQL parameters, store namespaces, Bolt parameters and URLs; a strict alphabet
means none of them ever needs escaping and path or injection characters are refused early.
Periods are excluded because LangGraph store namespaces are joined with them.
"""

from __future__ import annotations

import re

from stores.errors import InvalidInput

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_:@-]{0,127}$"
"""Every id's alphabet and length, as a regular expression (HTTP path parameters declare it)."""
_ID = re.compile(ID_PATTERN)


def check_id(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid id, else raise ``InvalidInput`` naming the rule."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInput(
            f"invalid {kind}: use 1-128 characters from letters, digits and _:@- "
            "starting with a letter or digit"
        )
    return value


def thread_key(user_id: str, thread_id: str) -> str:
    """The storage key of ``user_id``'s thread ``thread_id``: what checkpoints, locks, run
    marks and tombstones are keyed by.

    Thread ids are chosen by clients and are per user: two users who pick the same id get
    two threads, and nobody can learn whether another user's id exists. The separator is
    outside the id alphabet, so a key names exactly one (user, thread) pair and never
    equals a plain id (threads stored before ids were per user keep their plain id as key).
    """
    return f"{user_id}/{thread_id}"
