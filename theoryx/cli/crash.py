"""Unexpected exceptions in a command: one line for the user, the details in a file.

No command ever prints a traceback. An exception theoryx did not raise on purpose becomes an
:class:`~theoryx.errors.InternalError` (``ERR_INTERNAL``) whose message names the exception in
one line and the file that holds the traceback, the command line and the version. The file goes
to the system's temporary directory, which stays writable when the home's disk is full.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback

from theoryx.errors import InternalError


def internal_error(exc: BaseException) -> InternalError:
    """The :class:`InternalError` for ``exc``, after writing its details to a crash file."""
    from theoryx import __version__

    summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:300] if str(exc) else type(exc).__name__
    details = (f"theoryx {__version__}\nargv: {sys.argv!r}\ntime: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n\n"
               + "".join(traceback.format_exception(exc)))
    try:
        fd, path = tempfile.mkstemp(prefix=f"theoryx-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(details)
        where = f"details in {path}"
    except OSError as write_error:
        where = f"and its details could not be written ({write_error.strerror})"
    return InternalError(f"internal error ({summary}); {where}. Please report it")
