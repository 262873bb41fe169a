"""A minimal headless-Chromium driver over the Chrome DevTools Protocol.

Debian's ``chromium`` plus the ``websockets`` package is all it needs: no driver binary, no
browser download, so it works offline and in CI exactly as on a laptop. It does only what
the browser tests need: load a page, evaluate JavaScript, type, wait, take a screenshot, and
collect the page's JavaScript errors so a broken page fails the test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--mute-audio",
)
INSTALL_HINT = "apt-get update && apt-get install -y chromium"


class PageError(AssertionError):
    """The page (or the browser) did something a test must not ignore."""


def find_chromium() -> str:
    """The browser binary; a missing one is a failure with the install command, never a skip."""
    path = os.environ.get("MNEMOGRAPH_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise PageError(f"Debian chromium is not installed; install it with: {INSTALL_HINT}")
    return path


class Page:
    """One browser tab. Commands are matched to replies by id; events are kept for checks."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            if "id" in message:
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
                continue
            method = message.get("method")
            params = message.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text")
                self.errors.append(f"uncaught: {text}")
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
                )
                self.console.append(f"{params.get('type')}: {text}")
                if params.get("type") == "error":
                    self.errors.append(f"console.error: {text}")

    async def send(self, method: str, within_s: float = 30.0, **params: Any) -> dict[str, Any]:
        """Run one CDP command and return its result; a protocol error raises."""
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, within_s)
        if "error" in reply:
            raise PageError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript (promises awaited) and return its JSON value."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise PageError(f"evaluating {expression!r} threw: {text}")
        return result.get("result", {}).get("value")

    async def wait_for(
        self, expression: str, *, within_s: float = 30.0, what: str = "", debug: str = ""
    ) -> Any:
        """Poll until ``expression`` is truthy; on timeout say what was awaited and, from the
        ``debug`` expression, what the page showed instead."""
        deadline = time.monotonic() + within_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                shown = await self.evaluate(debug) if debug else None
                raise PageError(
                    f"timed out after {within_s}s waiting for {what or expression}; "
                    f"page showed: {shown!r}; errors: {self.errors}; console: {self.console}"
                )
            await asyncio.sleep(0.05)

    async def navigate(self, url: str, *, within_s: float = 30.0) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            within_s=within_s,
            what=f"{url} to load",
        )

    async def type_text(self, selector: str, text: str) -> None:
        """Focus an element and type into it the way a user's keyboard would."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                nativeVirtualKeyCode=13,
                text="\r" if kind == "keyDown" else "",
            )

    async def screenshot(self, path: Path) -> Path:
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self._ws.close()


def _launch(binary: str, profile_dir: Path, width: int, height: int) -> subprocess.Popen[bytes]:
    """Start Chromium with a fresh profile; its output goes to ``chromium.log`` beside it."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    (profile_dir / "DevToolsActivePort").unlink(missing_ok=True)
    with (profile_dir.parent / "chromium.log").open("wb") as log:
        return subprocess.Popen(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile_dir}",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _devtools_port(profile_dir: Path) -> int | None:
    """The port Chromium chose, once it has written ``DevToolsActivePort``."""
    port_file = profile_dir / "DevToolsActivePort"
    text = port_file.read_text() if port_file.is_file() else ""
    return int(text.split()[0]) if text.strip() else None


def _log_tail(profile_dir: Path) -> str:
    return (profile_dir.parent / "chromium.log").read_text(errors="replace")[-2000:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@asynccontextmanager
async def open_browser(
    profile_dir: Path, *, width: int = 1400, height: int = 1000, start_within_s: float = 30.0
) -> AsyncIterator[Page]:
    """Start headless Chromium with a throwaway profile and yield its first tab.

    ``--remote-debugging-port=0`` lets Chromium pick a free port and write it to
    ``DevToolsActivePort`` in the profile, so parallel runs never race for a port.
    """
    binary = find_chromium()
    proc = await asyncio.to_thread(_launch, binary, profile_dir, width, height)
    try:
        deadline = time.monotonic() + start_within_s
        while (port := await asyncio.to_thread(_devtools_port, profile_dir)) is None:
            if proc.poll() is not None:
                tail = await asyncio.to_thread(_log_tail, profile_dir)
                raise PageError(f"chromium exited with {proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                tail = await asyncio.to_thread(_log_tail, profile_dir)
                raise PageError(f"chromium did not start in {start_within_s}s: {tail}")
            await asyncio.sleep(0.1)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False
        ) as http:
            targets = (await http.get("/json/list")).json()
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise PageError(f"chromium has no page target: {targets}")
        ws = await connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        page = Page(ws)
        try:
            await page.send("Page.enable")
            await page.send("Runtime.enable")
            yield page
        finally:
            await page.close()
    finally:
        await asyncio.to_thread(_stop, proc)
