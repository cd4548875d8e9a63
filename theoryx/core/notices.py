"""Notices: what library code has to tell a person, without printing.

Library code never writes to stdout or stderr. It reports a notice through the ``theoryx``
logger with a *kind*, and whoever drives the library decides how to show it:

- ``warning(text)``  something the caller should fix (an unused attachment): level WARNING;
- ``note(text)``     a fact worth knowing (a charge above the reservation): level INFO;
- ``progress(text)`` what a slow step is doing (building an image): level INFO.

The CLI installs :func:`theoryx.cli.notices.install`, which prints them on stderr as
``Warning: <text>``, ``Note: <text>`` and ``<text>``. A Python caller sees warnings through
logging's last-resort handler unless it configures the ``theoryx`` logger itself; the kind is
on each record as ``record.theoryx_kind``.
"""

from __future__ import annotations

import logging

LOGGER = logging.getLogger("theoryx")
KINDS = ("warning", "note", "progress")
_LEVEL = {"warning": logging.WARNING, "note": logging.INFO, "progress": logging.INFO}


def notice(kind: str, text: str) -> None:
    """Report ``text`` as a notice of ``kind`` (one of :data:`KINDS`)."""
    LOGGER.log(_LEVEL[kind], "%s", text, extra={"theoryx_kind": kind})


def warning(text: str) -> None:
    """Something the caller should fix; the CLI prints ``Warning: <text>``."""
    notice("warning", text)


def note(text: str) -> None:
    """A fact worth knowing; the CLI prints ``Note: <text>``."""
    notice("note", text)


def progress(text: str) -> None:
    """What a slow step is doing; the CLI prints ``<text>`` as it is."""
    notice("progress", text)
