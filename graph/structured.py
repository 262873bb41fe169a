"""Structured output from a chat model, made safe for every OpenAI-compatible server.

It is LangChain-only code (no storage), used by the extracting nodes through their ports and
by the benches that run extraction directly on a model.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import BaseModel


def structured(model: BaseChatModel, schema: type[BaseModel]) -> Runnable[Any, Any]:
    """``model.with_structured_output(schema, method="function_calling")``, tuned.

    Function calling (not ``json_schema``) because llama.cpp's OpenAI server rejects the
    latter. Building it converts the pydantic schema to a tool definition, which costs
    milliseconds; the holder of the model (``Services.structured``) builds it once per
    schema and keeps it, since the extracting nodes ask for the same pair on every turn.
    """
    runnable = model.with_structured_output(schema, method="function_calling")
    _tune_binding(runnable, schema)
    return runnable


def _tune_binding(runnable: Runnable[Any, Any], schema: type[BaseModel]) -> None:
    """Make the structured call unstreamed, with its tracing schema converted once.

    **Never streamed.** A turn that streams its reply puts every model call inside the
    graph in a streaming context, and OpenAI-compatible servers stream tool calls each
    their own way: llama.cpp repeats the function name in every delta (LangChain
    concatenates it into "ExtractedMemoriesExtractedMemories…"), others omit ids or split
    names. A tool call's arguments are useless until complete anyway, so the call carries
    ``stream=False``, LangChain's per-call opt-out that overrides streaming handlers and
    ``streaming=True``; plain replies keep streaming tokens.

    **Schema once.** ``with_structured_output`` binds ``ls_structured_output_format=
    {"schema": <class>}``, and every model call converts that class to JSON schema for
    LangSmith metadata, tracing on or off: about 1 ms of pydantic work per call, 12% of the
    server's CPU under load. The already-converted dict passes through unchanged.
    """
    from langchain_core.utils.function_calling import convert_to_json_schema

    kwargs = getattr(getattr(runnable, "first", None), "kwargs", None)
    if not isinstance(kwargs, dict):  # every chat model's function-calling path binds kwargs
        raise TypeError(f"unexpected structured-output runnable: {type(runnable).__name__}")
    kwargs["stream"] = False
    trace = kwargs.get("ls_structured_output_format")
    if isinstance(trace, dict) and trace.get("schema") is schema:
        kwargs["ls_structured_output_format"] = {**trace, "schema": convert_to_json_schema(schema)}
