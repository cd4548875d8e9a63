"""Captured stdout/stderr: secret values scrubbed, a bounded head and tail kept on disk, stored
into the CAS by streaming.

Every adapter writes a processor's stdout and stderr through a :class:`LogCapture`, which

1. **scrubs** secret values as the bytes arrive (:class:`Scrubber` holds back the longest tail
   that could start a secret, so a value split across two chunks is still caught). Scrubbing
   comes *before* truncation: a cut can only fall inside the mask or inside clean bytes, never
   leave part of a secret behind;
2. **bounds** what it keeps: the first ``limit // 2`` bytes (the head) go straight to the log
   file, the last ``limit - limit // 2`` bytes (the tail) to a ring file beside it; whatever
   falls between is only counted. Closing the capture appends one marker line saying how many
   bytes were dropped, then the tail, so the stored log is at most ``limit`` bytes plus the
   marker.

theoryx's own memory stays at one chunk plus the scrubber's carry (shorter than the longest
secret) whatever the processor writes; the bytes live on disk. The limit is the spec's
``limits.log_bytes`` (:data:`theoryx.spec.model.DEFAULT_LOG_BYTES` by default, per stream).

This module imports only the standard library at module level.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cas import Store

MASK = b"[REDACTED]"
MIN_SECRET = 4          # shorter values are never scrubbed: they would mask ordinary text
_COPY_CHUNK = 1 << 20


def scrub(data: bytes, secrets: Iterable[str]) -> bytes:
    """Replace every exact occurrence of each (non-trivial) secret value."""
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True):
        data = data.replace(value.encode(), MASK)
    return data


SMALL_LOG = 1 << 20
"""A log at most this large is scrubbed in memory and stored from there: no scrubbed copy is
written beside it, so no file is created and removed for it (on an ext4 without a journal each
file removed makes every file created in the next minute slower: see BENCHMARKS.md)."""


def store_log(path: Path, cas: Store, secrets: Iterable[str]) -> str | None:
    """Store the log file at ``path`` (scrubbed) and return its cid; None when absent.

    The file is consumed (moved into the CAS, or removed once its bytes are stored). Without
    secrets it is moved in as it is; with secrets a log of at most :data:`SMALL_LOG` bytes is
    scrubbed in memory, a larger one streamed (never read whole) through a scrubbed sibling
    file."""
    values = [s for s in secrets if len(s) >= MIN_SECRET]
    if not values:
        if not path.exists():
            return None
        return cas.put_file(path, move=True).cid
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as src:
        data = src.read(SMALL_LOG + 1)
        if len(data) <= SMALL_LOG:
            cid = cas.put_bytes(scrub(data, values)).cid
            os.unlink(path)
            return cid
        scrubbed = path.with_name(path.name + ".scrubbed")
        scrubber = Scrubber(values)
        with open(scrubbed, "wb") as dst:
            dst.write(scrubber.feed(data))
            while chunk := src.read(_COPY_CHUNK):
                dst.write(scrubber.feed(chunk))
            dst.write(scrubber.flush())
    os.unlink(path)
    return cas.put_file(scrubbed, move=True).cid


def tail(data: bytes, lines: int = 20, limit: int = 4000) -> str:
    """The last ``lines`` lines of a log, decoded leniently and bounded in size."""
    text = data.decode("utf-8", "replace").rstrip()
    return "\n".join(text.splitlines()[-lines:])[-limit:]


class Scrubber:
    """Scrubs secret values from a byte stream cut into arbitrary chunks: the longest tail that
    could start a secret is held back until the next chunk (or :meth:`flush`)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET})
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


@dataclass(frozen=True)
class Captured:
    """What a closed :class:`LogCapture` saw: ``size`` bytes in all (after scrubbing, skipped
    bytes included), of which ``head`` bytes open the kept log and ``dropped`` were not kept.
    The rest (``size - head - dropped``) is the kept tail."""

    size: int
    head: int
    dropped: int


def marker(dropped: int, stream: str, limit: int) -> bytes:
    """The line that stands for the bytes a capture dropped between its head and its tail."""
    return (f"\n[theoryx: {dropped} bytes of {stream} dropped here; the log keeps its first and "
            f"last bytes, {limit} in all (limits.log_bytes)]\n").encode()


class LogCapture:
    """One stream (``stdout`` or ``stderr``) captured into ``path``; see the module docstring.

    ``forward`` (when given) receives every scrubbed chunk as it is produced, dropped or not
    (``--stream`` shows the whole output live). ``with_marker=False`` leaves the marker out (for a
    cut that a later capture redoes with its own). ``create_empty=False`` creates the
    file only when a first byte comes (the mock adapter stores no log for a silent stream).
    Not thread-safe: one writer.
    """

    def __init__(self, path: Path, limit: int, secrets: Iterable[str], *, stream: str = "stdout",
                 forward: Callable[[bytes], None] | None = None, with_marker: bool = True,
                 create_empty: bool = True) -> None:
        if limit < 2:
            raise ValueError(f"a log limit of at least 2 bytes is needed, got {limit}")
        self.path = Path(path)
        self.limit = limit
        self.stream = stream
        self._head_cap = limit // 2
        self._tail_cap = limit - self._head_cap
        self._forward = forward
        self._with_marker = with_marker
        self._scrubber = Scrubber(secrets)
        self._fd = self._open() if create_empty else None
        self._ring_path = self.path.with_name(self.path.name + ".tail")
        self._ring_fd: int | None = None
        self._size = 0          # bytes seen after scrubbing, skipped ones included
        self._head = 0          # bytes in the head (the log file)
        self._ring_len = 0      # valid bytes in the ring (<= tail capacity)
        self._ring_pos = 0      # where the next tail byte goes in the ring
        self._closed: Captured | None = None

    def write(self, data: bytes) -> None:
        """Take the next raw bytes of the stream."""
        if data:
            self._keep(self._scrubber.feed(data))

    def skip(self, count: int) -> None:
        """``count`` bytes of the stream went by unseen (dropped upstream, e.g. by the Modal
        runner's own capture): what came before can no longer be part of a contiguous tail."""
        if count <= 0:
            return
        self._keep(self._scrubber.flush())
        self._head_cap = self._head           # the head ends here: what follows is not contiguous
        self._ring_len = self._ring_pos = 0
        self._size += count

    def close(self) -> Captured:
        """Finish the log file (head, marker, tail) and return what was seen. Idempotent."""
        if self._closed is not None:
            return self._closed
        try:
            self._keep(self._scrubber.flush())
            dropped = self._size - self._head - self._ring_len
            if dropped and self._with_marker:
                _write_all(self._log_fd(), marker(dropped, self.stream, self.limit))
            if self._ring_fd is not None:
                wrapped = self._ring_len == self._tail_cap
                start = self._ring_pos if wrapped else 0
                self._copy_ring(start, (self._tail_cap if wrapped else self._ring_len) - start)
                if wrapped:
                    self._copy_ring(0, self._ring_pos)
        except BaseException:
            self.close_quietly()
            raise
        self.close_quietly()
        self._closed = Captured(self._size, self._head, dropped)
        return self._closed

    def close_quietly(self) -> None:
        """Release the descriptors without finishing the file (after a failure)."""
        if self._closed is not None:
            return
        for fd in (self._fd, self._ring_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._ring_fd is not None:  # the ring file exists only once the tail was written to
            self._ring_path.unlink(missing_ok=True)
        self._closed = Captured(self._size, self._head, self._size - self._head - self._ring_len)

    # -- internals -----------------------------------------------------------------------------

    def _keep(self, data: bytes) -> None:
        if not data:
            return
        if self._forward is not None:
            self._forward(data)
        self._size += len(data)
        view = memoryview(data)
        if self._head < self._head_cap:
            n = min(len(view), self._head_cap - self._head)
            _write_all(self._log_fd(), view[:n])
            self._head += n
            view = view[n:]
        if view:
            self._to_ring(view)

    def _to_ring(self, view: memoryview) -> None:
        if self._ring_fd is None:
            self._ring_fd = os.open(self._ring_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        cap = self._tail_cap
        if len(view) >= cap:            # only its last `cap` bytes can survive
            view = view[len(view) - cap:]
            self._ring_pos = 0
        while view:
            n = min(len(view), cap - self._ring_pos)
            _pwrite_all(self._ring_fd, view[:n], self._ring_pos)
            self._ring_pos = (self._ring_pos + n) % cap
            self._ring_len = min(cap, self._ring_len + n)
            view = view[n:]

    def _copy_ring(self, offset: int, count: int) -> None:
        assert self._ring_fd is not None
        end = offset + count
        while offset < end:
            chunk = os.pread(self._ring_fd, min(_COPY_CHUNK, end - offset), offset)
            if not chunk:
                break
            _write_all(self._log_fd(), chunk)
            offset += len(chunk)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    def _log_fd(self) -> int:
        if self._fd is None:
            self._fd = self._open()
        return self._fd


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n
