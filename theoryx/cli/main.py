"""The console entry point (``theoryx`` and ``python -m theoryx``): the click-free path of
``theoryx run`` first, then click.

This module and :mod:`theoryx.cli.fastpath` must not import click (nor :mod:`theoryx.cli.app`)
at import time: a cache hit should cost little more than starting Python.

Exit codes owned here: 130 after Ctrl-C (as a shell reports SIGINT), 141 when the reader of
stdout went away (``theoryx ls | head -1``; as SIGPIPE would, and without a message).
"""

from __future__ import annotations

import os
import sys

INTERRUPTED = 130
STDOUT_CLOSED = 141


def main() -> None:
    """``theoryx`` and ``python -m theoryx``."""
    try:
        code = _main()
        sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stderr.write("\nAborted!\n")  # as click says it
        code = INTERRUPTED
    except BrokenPipeError:
        code = stdout_closed()
    raise SystemExit(code)


def _main() -> int | str | None:
    from theoryx.cli.fastpath import try_run

    code = try_run(sys.argv[1:])
    if code is not None:
        return code
    from theoryx.cli.app import main as cli_main

    try:
        cli_main()
    except SystemExit as done:
        return done.code
    return 0


def stdout_closed() -> int:
    """After a broken pipe on stdout: point stdout at ``/dev/null`` (so that nothing more fails
    on the way out) and return :data:`STDOUT_CLOSED`."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return STDOUT_CLOSED
