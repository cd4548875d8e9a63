"""The console entry point (``theoryx`` and ``python -m theoryx``): the click-free path of
``theoryx run`` first, then click.

This module and :mod:`theoryx.cli.fastpath` must not import click (nor :mod:`theoryx.cli.app`)
at import time: a cache hit should cost little more than starting Python.
"""

from __future__ import annotations

import sys


def main() -> None:
    """``theoryx`` and ``python -m theoryx``."""
    from theoryx.cli.fastpath import try_run

    try:
        code = try_run(sys.argv[1:])
    except KeyboardInterrupt:
        sys.stderr.write("\nAborted!\n")  # as click says it
        raise SystemExit(1) from None
    if code is not None:
        sys.stdout.flush()
        raise SystemExit(code)
    from theoryx.cli.app import main as cli_main

    cli_main()
