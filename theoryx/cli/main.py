"""The console entry point: the click-free cache-hit fast path first, then click.

This module and ``theoryx.cli.fastpath`` must not import click (nor ``theoryx.cli.app``) at import time.
"""

from __future__ import annotations

import sys


def main() -> None:
    """``theoryx`` and ``python -m theoryx``."""
    from theoryx.cli.fastpath import try_run

    if try_run(sys.argv[1:]):
        return
    from theoryx.cli.app import main as cli_main

    cli_main()
