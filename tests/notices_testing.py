"""Capturing the library's notices as a Python caller does: a handler on the ``theoryx`` logger.

Not capsys/caplog: once any CLI test of the same process has installed the CLI's stderr display,
the ``theoryx`` logger no longer propagates to the root logger (where caplog listens), and what
reaches stderr then depends on the order the tests ran in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured_notices() -> Iterator[list[logging.LogRecord]]:
    """The records the ``theoryx`` logger emits inside the block (notes and progress included)."""
    logger = logging.getLogger("theoryx")
    keep, level = _Keep(), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        yield keep.records
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)


def texts(records: list[logging.LogRecord], kind: str | None = None) -> list[str]:
    """The messages of ``records`` (of notice ``kind`` only, when given)."""
    return [r.getMessage() for r in records if kind is None or getattr(r, "theoryx_kind", None) == kind]
