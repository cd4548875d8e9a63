"""Showing the library's notices (:mod:`theoryx.core.notices`) on stderr, as the CLI always did."""

from __future__ import annotations

import logging
import sys

from theoryx.core.notices import LOGGER

PREFIX = {"warning": "Warning: ", "note": "Note: ", "progress": ""}


class StderrNotices(logging.Handler):
    """Writes each notice as one line on the *current* ``sys.stderr`` (tests swap it): its
    kind's prefix, then the text. A record of the ``theoryx`` logger without a kind is shown as
    a warning when it is one, and otherwise dropped: it is a diagnostic, not a notice."""

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "theoryx_kind", None)
        if kind is None:
            if record.levelno < logging.WARNING:
                return
            kind = "warning"
        try:
            sys.stderr.write(PREFIX.get(kind, "") + record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def install() -> None:
    """Route notices to stderr (idempotent); they no longer reach the root logger."""
    if not any(isinstance(h, StderrNotices) for h in LOGGER.handlers):
        LOGGER.addHandler(StderrNotices())
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
