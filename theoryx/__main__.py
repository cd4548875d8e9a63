"""``python -m theoryx``."""

from theoryx.cli import main

main()
