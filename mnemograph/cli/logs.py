"""Where the CLI's log records go: a file under the data dir, never the chat screen.

A chat screen is for the conversation. Warnings from the post-reply memory work used to land
in the middle of a reply; now every record goes to ``<data dir>/logs/mnemograph.log``, the
first warning of a run prints one short line saying where, and the chat command turns a
failed memory step into one notice line after the reply (:class:`TurnNotices`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

LOG_NAME = "mnemograph.log"
DEFAULT_LOG_PATH = f"./.mnemograph/logs/{LOG_NAME}"

# The post-reply nodes whose failure a user should hear about, and what they lose.
_STEPS = {
    "nodes.write_memory": "long-term memory",
    "nodes.extract_knowledge": "knowledge graph",
    "nodes.summarize": "summary",
}


def log_path() -> Path:
    """The log file for this data dir (``MNEMOGRAPH_DATA_DIR``, default ``./.mnemograph``)."""
    from stores.settings import get_settings

    return get_settings().data_dir.resolve() / "logs" / LOG_NAME


class _FirstWarning(logging.Handler):
    """Prints one line on the first warning of the run, naming the log file."""

    def __init__(self, path: Path, say: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self.path = path
        self.say = say
        self.said = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.said:
            self.said = True
            self.say(f"(warnings are logged to {self.path})")


def setup_logging(say: Callable[[str], None]) -> Path:
    """Send every log record to the data dir's log file; ``MNEMOGRAPH_DEBUG`` adds stderr.

    ``say`` prints the one-line pointer to the file on the first warning.
    """
    level = os.environ.get("MNEMOGRAPH_LOG_LEVEL", "WARNING").upper()
    path = log_path()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.setLevel(level)
    handler: logging.Handler
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:  # an unwritable data dir fails later with its own clear error
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.addHandler(_FirstWarning(path, say))
    if os.environ.get("MNEMOGRAPH_DEBUG"):
        root.addHandler(logging.StreamHandler(sys.stderr))
    logging.captureWarnings(True)
    return path


class TurnNotices(logging.Handler):
    """Collects the post-reply steps that failed during one turn, to report after the reply."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.failed: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        step = _STEPS.get(record.name)
        if step is not None and step not in self.failed:
            reason = record.args[0] if isinstance(record.args, tuple) and record.args else ""
            self.failed[step] = str(reason)

    def take(self) -> list[str]:
        """One short line per failed step since the last call, and forget them."""
        lines = [
            f"note: the {step} was not updated this turn" + (f" ({why})" if why else "")
            for step, why in self.failed.items()
        ]
        self.failed.clear()
        return lines

    def __enter__(self) -> TurnNotices:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)
