"""The Agent Protocol's wire format: JSON as langgraph_api writes it, and its SSE frames.

State values hold LangChain messages (pydantic models), datetimes and dataclasses; they are
written the way ``langgraph_sdk`` reads them back: a message is its ``model_dump()`` (with
``type``), a datetime ISO 8601. Objects with no JSON form are written as ``"<TypeName>"``,
never as their ``repr``, so no internal state leaks into an answer.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, time
from enum import Enum
from typing import Any
from uuid import UUID

import orjson
from fastapi import Response
from pydantic import BaseModel

PRIVATE_VALUES = frozenset({"recalled"})
"""State keys never sent to a client: ``recalled`` is this turn's prompt material (an
untracked channel), not thread state."""


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, UUID):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).decode("utf-8", "replace")
    return f"<{type(obj).__name__}>"


def dumps(obj: Any) -> bytes:
    """``obj`` as compact JSON; what orjson refuses (integers over 64 bits, lone surrogates)
    goes through ``json``, ASCII-escaped."""
    try:
        return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(obj, default=_default).encode()


def json_response(
    obj: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        dumps(obj), status_code=status_code, media_type="application/json", headers=headers
    )


def sse(event: str, data: Any) -> bytes:
    """One server-sent event in langgraph_api's framing (``event:``, one ``data:`` line)."""
    return b"event: " + event.encode() + b"\r\ndata: " + dumps(data) + b"\r\n\r\n"


def public_values(values: Any) -> Any:
    """A state's values as a client sees them (without :data:`PRIVATE_VALUES`)."""
    if isinstance(values, dict):
        return {k: v for k, v in values.items() if k not in PRIVATE_VALUES}
    return values
