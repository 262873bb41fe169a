"""HTTP entry point: the app itself is assembled in :mod:`mnemograph.web.app`.

Run with ``mnemograph serve`` (or ``uvicorn --factory server:create_app``).
"""

from __future__ import annotations

from mnemograph.web.app import create_app

__all__ = ["create_app"]
