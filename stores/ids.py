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
