"""Test-only entry point: the ``mnemograph`` CLI with the echo model made to hang on cue.

``python -m tests.hang STAGE DIR <mnemograph args…>`` runs the CLI in this process after
patching :class:`stores.fake_llm.EchoChatModel`: the call of ``STAGE`` (``reply``,
``summary`` or ``extract``) whose user text contains ``HANG`` creates ``DIR/STAGE`` and then
blocks forever, so a test can SIGKILL the process at that exact point of a turn. The hook
lives here, not in the product: production code has no way to reach it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from stores.fake_llm import EchoChatModel


def _stage(messages: list[BaseMessage], tools: bool) -> str:
    if tools:
        return "extract"
    first = messages[0] if messages else None
    is_summary = isinstance(first, SystemMessage) and "running summary" in first.text
    return "summary" if is_summary else "reply"


def install(want: str, folder: Path) -> None:
    """Make the echo model hang at ``want`` on messages that contain ``HANG``."""
    original = EchoChatModel._generate

    def generate(self: EchoChatModel, messages: list[BaseMessage], *a: Any, **kw: Any) -> Any:
        stage = _stage(messages, bool(kw.get("tools")))
        if stage == want:
            if stage == "reply":  # only the turn being answered, not earlier ones in the window
                last = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
                hang = last is not None and "HANG" in last.text
            else:
                hang = any("HANG" in m.text for m in messages)
            if hang:
                Path(folder, stage).touch()
                while True:  # until the test kills the process
                    time.sleep(3600)
        return original(self, messages, *a, **kw)

    EchoChatModel._generate = generate  # type: ignore[method-assign]


def main() -> None:
    stage, folder, *args = sys.argv[1:]
    install(stage, Path(folder))
    sys.argv = ["mnemograph", *args]
    from cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
