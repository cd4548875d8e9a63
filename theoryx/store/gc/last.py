"""The last gc: when it finished and what it reported, kept in ``<home>/gc-last.json``.

Only a gc that changed the store is recorded (not ``--dry-run``). The file is replaced
atomically (a temp file and a rename) while the gc still holds ``gc.lock``, so a reader sees the
previous report or the new one, never half of one. It is a convenience for people (``theoryx
ui``'s Store page): nothing depends on it, so failing to write it only warns, and an unreadable
file reads as "no gc recorded".
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theoryx.core import notices

FILE_NAME = "gc-last.json"
MAX_BYTES = 1 << 20
"""A larger file is not a report this module wrote; it is ignored rather than read."""


@dataclass(frozen=True)
class LastGc:
    """The last recorded gc: when it finished (ms since the epoch) and its ``--json`` report."""

    finished_ms: int
    report: dict[str, Any]


def record(home: Path, report: dict[str, Any], *, now_ms: int | None = None) -> None:
    """Replace ``<home>/gc-last.json`` with ``report`` and the time; warn (never raise) on failure."""
    body = {"finished_ms": int(time.time() * 1000) if now_ms is None else now_ms, "report": report}
    path = home / FILE_NAME
    tmp = home / f".{FILE_NAME}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(body, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        notices.warning(f"could not record the gc's report in {path}: {exc.strerror or exc}")


def read(home: Path) -> LastGc | None:
    """The last recorded gc, or None (never recorded, or the file is not one this module wrote)."""
    path = home / FILE_NAME
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("finished_ms"), int) \
            or not isinstance(body.get("report"), dict):
        return None
    return LastGc(body["finished_ms"], body["report"])
