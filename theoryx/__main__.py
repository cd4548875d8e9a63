"""``python -m theoryx``."""

from theoryx.main import main

main()
