"""The console entry point (``theoryx`` and ``python -m theoryx``): the click-free path of
``theoryx run`` first, then click.

This module and :mod:`theoryx.cli.fastpath` must not import click (nor :mod:`theoryx.cli.app`)
at import time: a cache hit should cost little more than starting Python.

Exit codes owned here: 130 after Ctrl-C (as a shell reports SIGINT), 141 when the reader of
stdout went away (``theoryx ls | head -1``; as SIGPIPE would, and without a message), 2 when
started with its standard output closed (``>&-``).
"""

from __future__ import annotations

import os
import sys

INTERRUPTED = 130
STDOUT_CLOSED = 141


def main() -> None:
    """``theoryx`` and ``python -m theoryx``."""
    closed = standard_streams()
    if closed is not None:
        raise SystemExit(closed)
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


USAGE = 2


def standard_streams() -> int | None:
    """Make a process started with standard descriptors closed (``<&-``, ``>&-``, ``2>&-``)
    safe: each closed one of 0, 1 and 2 is held open on ``/dev/null``, so that no file theoryx
    opens later (the database, a blob, a lease) takes its number and receives what is meant for
    a standard stream. A closed stderr then discards notices; a closed stdin leaves
    ``sys.stdin`` None (the commands that read ``-`` say it is closed). A closed stdout is a
    usage error, :data:`USAGE` (said on stderr when that is open): a run's result, a listing or
    a blob's bytes would go nowhere, and a run would be paid for unseen. None when all is well."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    if not closed:
        return None
    for fd in closed:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    if 2 in closed:
        sys.stderr = open(2, "w", closefd=False)  # the process's stderr, to its end
    if 1 in closed:
        sys.stderr.write("Error: the standard output is closed: nothing theoryx prints could be seen "
                         "(redirect it to /dev/null to discard it)\n")
        sys.stdout = open(1, "w", closefd=False)  # so that the exit's flush finds a stream
        return USAGE
    return None


def stdin_bytes(what: str) -> bytes:
    """All of the standard input, for an option given ``-`` (``what`` names it); a
    :class:`~theoryx.errors.UsageError` when the process was started with it closed."""
    from theoryx.errors import UsageError

    if sys.stdin is None:
        raise UsageError(f"cannot read {what}: the standard input is closed")
    return sys.stdin.buffer.read()
