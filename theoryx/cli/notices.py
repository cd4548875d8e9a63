"""Showing the library's notices (:mod:`theoryx.core.notices`) on stderr, as the CLI always did."""

from __future__ import annotations

import logging
import sys

from theoryx.core.notices import LOGGER

PREFIX = {"warning": "Warning: ", "note": "Note: ", "progress": ""}


class StderrNotices(logging.Handler):
    """Writes each notice as one line on the *current* ``sys.stderr`` (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "theoryx_kind", "warning" if record.levelno >= logging.WARNING else "note")
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
