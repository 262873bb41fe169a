"""The inspector page: static HTML/JS/CSS shipped inside the package, served by the app.

Kept as package data rather than routes so the HTTP modules stay thin and the page can be
edited without touching Python. The page is plain JavaScript with no library and no build
step: nothing is vendored, and an install from a clean clone serves it as is.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""Where ``inspector.html``, ``.js`` and ``.css`` live (package data, see pyproject.toml). A
folder of their own, so the asset mount can never serve the package's Python files."""

ASSET_PREFIX = "/inspector"

# The page renders user-controlled text (memories, facts, messages). A strict policy means
# that even a rendering bug cannot run injected script or send data to another origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Developers edit the page while the server runs; never serve them a stale copy.
    "Cache-Control": "no-cache",
}


def mount_inspector(app: FastAPI) -> None:
    """Serve the inspector at ``/`` and its assets under ``/inspector/``.

    The page itself needs no auth: it holds no data and asks the user for an API key, which
    it sends on every API call. Both routes stay out of the OpenAPI schema, which documents
    the API, not the page.
    """
    page = STATIC_DIR / "inspector.html"
    if not page.is_file():
        raise RuntimeError(f"inspector page missing from the install: {page}")

    @app.get("/", include_in_schema=False)
    async def inspector() -> FileResponse:
        return FileResponse(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    app.mount(ASSET_PREFIX, StaticFiles(directory=STATIC_DIR, html=False), name="inspector")
