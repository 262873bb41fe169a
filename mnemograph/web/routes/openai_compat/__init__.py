"""The OpenAI-compatible door: ``GET /v1/models`` and ``POST /v1/chat/completions``."""

from __future__ import annotations

from mnemograph.web.routes.openai_compat.chat import router

__all__ = ["router"]
