"""Showing the library's notices (:mod:`theoryx.core.notices`) on stderr, as the CLI always did:
``Warning: <text>``, ``Note: <text>``, or the text alone for progress."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager

from theoryx.core.notices import routed_to

PREFIX = {"warning": "Warning: ", "note": "Note: ", "progress": ""}


def to_stderr(kind: str, text: str) -> None:
    """One line on the *current* ``sys.stderr`` (tests swap it)."""
    sys.stderr.write(PREFIX.get(kind, "") + text + "\n")
    sys.stderr.flush()


def shown() -> AbstractContextManager[None]:
    """Inside the block, notices are printed on stderr instead of going to logging."""
    return routed_to(to_stderr)
