"""Notices: what library code has to tell a person, without printing.

Library code never writes to stdout or stderr. It reports a notice with a *kind*:

- ``warning(text)``  something the caller should fix (an unused attachment);
- ``note(text)``     a fact worth knowing (a plan created on first use);
- ``progress(text)`` what a slow step is doing (building an image).

Where a notice goes is the driver's choice. By default it is a record of the ``theoryx`` logger
(WARNING for warnings, INFO otherwise) carrying ``record.theoryx_kind``: a Python caller sees
warnings through logging's last-resort handler unless it configures that logger. A driver can
instead route notices to a *sink* for a while (:func:`routed_to`): the CLI prints them on stderr
as ``Warning: <text>``, ``Note: <text>`` and ``<text>`` (:mod:`theoryx.cli.notices`). ``logging``
is imported only when a notice goes to it, so a cache hit through the CLI never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

KINDS = ("warning", "note", "progress")
LOGGER_NAME = "theoryx"

Sink = Callable[[str, str], None]
"""Receives ``(kind, text)``."""

_sink: Sink | None = None


def notice(kind: str, text: str) -> None:
    """Report ``text`` as a notice of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    if _sink is not None:
        _sink(kind, text)
        return
    import logging

    level = logging.WARNING if kind == "warning" else logging.INFO
    logging.getLogger(LOGGER_NAME).log(level, "%s", text, extra={"theoryx_kind": kind})


@contextmanager
def routed_to(sink: Sink) -> Iterator[None]:
    """Send every notice to ``sink`` inside the ``with`` block (the previous route after it)."""
    global _sink
    previous, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = previous


def warning(text: str) -> None:
    """Something the caller should fix; the CLI prints ``Warning: <text>``."""
    notice("warning", text)


def note(text: str) -> None:
    """A fact worth knowing; the CLI prints ``Note: <text>``."""
    notice("note", text)


def progress(text: str) -> None:
    """What a slow step is doing; the CLI prints ``<text>`` as it is."""
    notice("progress", text)


class Coalesced:
    """Warnings that would repeat once per item of a batch, reported once per topic: the first
    as it comes, the others only counted; :meth:`close` then says how many more there were.
    Thread-safe (a batch's items finish on several threads)."""

    def __init__(self) -> None:
        import _thread

        self._lock = _thread.allocate_lock()
        self._counts: dict[str, int] = {}

    def warning(self, topic: str, text: str) -> None:
        """Report ``text`` if it is the first warning on ``topic`` (a plural noun phrase such as
        ``"team cache entries ignored"``, used in :meth:`close`'s line), else count it."""
        with self._lock:
            seen = self._counts.get(topic, 0)
            self._counts[topic] = seen + 1
        if not seen:
            warning(text)

    def count(self, topic: str) -> int:
        """How many warnings on ``topic`` came so far (reported or not)."""
        with self._lock:
            return self._counts.get(topic, 0)

    def close(self) -> None:
        """One warning per topic that came more than once: ``N more <topic> (the first is
        reported above)``; the counts start again from zero."""
        with self._lock:
            counts, self._counts = self._counts, {}
        for topic, n in counts.items():
            if n > 1:
                warning(f"{n - 1} more {topic} (the first is reported above)")


Warn = Callable[[str, str], None]
"""``(topic, text)``: a warning that may be coalesced (:meth:`Coalesced.warning`)."""


def each(topic: str, text: str) -> None:
    """A :data:`Warn` that reports every warning (a single run's)."""
    warning(text)
