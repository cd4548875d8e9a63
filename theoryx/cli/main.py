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
        code = aborted()
    except BrokenPipeError:
        code = stdout_closed()
    raise SystemExit(code)


def aborted() -> int:
    """After Ctrl-C: say so (as click does) and return :data:`INTERRUPTED`."""
    sys.stderr.write("\nAborted!\n")
    return INTERRUPTED


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


def stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone (a broken pipe elsewhere — a
    container's socket, a worker's stdin — is not the user's ``| head`` and stays an error)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False
