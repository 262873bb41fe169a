"""``python -m mnemograph.cli``."""

from mnemograph.cli import main

main()
