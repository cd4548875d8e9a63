"""``python -m theoryx``."""

from theoryx.cli.main import main

main()
