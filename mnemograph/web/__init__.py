"""The HTTP app: FastAPI routes, LangServe's ``/agent`` and the inspector page.

``app.create_app`` assembles it; ``deps`` holds the request dependencies (identity, services,
rate limit), ``errors`` the exception handlers, ``schemas`` the request and response models,
``routes/`` one router per resource (``routes/protocol/``: the Agent Protocol) and
``inspector`` the static page. Nothing here keeps module-level state: what lives as long as
the app lives on ``app.state``.
"""

from __future__ import annotations

from mnemograph.web.inspector import mount_inspector

__all__ = ["mount_inspector"]
