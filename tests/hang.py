"""Test-only entry point: the ``mnemograph`` CLI with its offline model made to hang on cue.

``python -m tests.hang STAGE DIR <mnemograph args…>`` runs the CLI in this process with the
``fake`` model setting building :class:`tests.fakes.ScriptedChatModel` (the echo model, nothing
scripted) with a ``hang``: the call of ``STAGE`` (``reply``, ``summary`` or ``extract``) whose
user text contains ``HANG`` creates ``DIR/STAGE`` and then blocks, so a test can SIGKILL the
process at that exact point of a turn. The hook lives here, not in the product: production
code has no way to reach it.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from tests.fakes import Hang, ScriptedChatModel


def _stage(messages: list[BaseMessage], tool: str | None) -> str:
    if tool is not None:
        return "extract"
    first = messages[0] if messages else None
    is_summary = isinstance(first, SystemMessage) and "running summary" in first.text
    return "summary" if is_summary else "reply"


def hang_at(want: str, folder: Path) -> Hang:
    """Hang the call of stage ``want`` on messages that contain ``HANG``, after creating
    ``folder/want`` to tell the test the process is there."""

    def hang(messages: list[BaseMessage], tool: str | None) -> bool:
        stage = _stage(messages, tool)
        if stage != want:
            return False
        if stage == "reply":  # only the turn being answered, not earlier ones in the window
            last = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
            hangs = last is not None and "HANG" in last.text
        else:
            hangs = any("HANG" in m.text for m in messages)
        if hangs:
            Path(folder, stage).touch()
        return hangs

    return hang


def install(want: str, folder: Path) -> None:
    """Make the ``fake`` model setting build the scripted model that hangs at ``want``."""
    from stores.models import llm

    build = llm.build_chat_model

    def build_hanging(settings: Any, *, stack: AsyncExitStack | None = None) -> Any:
        if settings.model != "fake":
            return build(settings, stack=stack)
        return ScriptedChatModel(hang=hang_at(want, folder))

    llm.build_chat_model = build_hanging


def main() -> None:
    stage, folder, *args = sys.argv[1:]
    install(stage, Path(folder))
    sys.argv = ["mnemograph", *args]
    from mnemograph.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
