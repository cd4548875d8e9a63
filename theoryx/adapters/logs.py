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


class Scrubber:
    """Scrubs secret values from a byte stream cut into arbitrary chunks: the longest tail that
    could start a secret is held back until the next chunk (or :meth:`flush`)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4})
        self._encoded = [s.encode() for s in self.secrets]
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        if not self._encoded:
            return data
        buf = scrub(self._carry + data, self.secrets)
        keep = self._held(buf)
        self._carry = buf[len(buf) - keep:]
        return buf[: len(buf) - keep]

    def flush(self) -> bytes:
        out, self._carry = self._carry, b""
        return out

    def _held(self, buf: bytes) -> int:
        best = 0
        for secret in self._encoded:
            for k in range(min(len(secret) - 1, len(buf)), best, -1):
                if buf.endswith(secret[:k]):
                    best = k
                    break
        return best
