"""Captured stdout/stderr: secret values are scrubbed before anything is stored or shown."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cas import Store

MASK = b"[REDACTED]"


def scrub(data: bytes, secrets: Iterable[str]) -> bytes:
    """Replace every exact occurrence of each (non-trivial) secret value."""
    for value in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        data = data.replace(value.encode(), MASK)
    return data


def store_log(path: Path, cas: Store, secrets: Iterable[str]) -> str | None:
    """Store the log file at ``path`` (scrubbed) and return its cid; None when absent."""
    if not path.exists():
        return None
    return cas.put_bytes(scrub(path.read_bytes(), secrets)).cid


def tail(data: bytes, lines: int = 20, limit: int = 4000) -> str:
    """The last ``lines`` lines of a log, decoded leniently and bounded in size."""
    text = data.decode("utf-8", "replace").rstrip()
    return "\n".join(text.splitlines()[-lines:])[-limit:]
