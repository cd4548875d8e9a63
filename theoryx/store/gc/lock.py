"""The store's maintenance lock: one ``theoryx gc`` (or ``verify --repair``) at a time.

``<home>/gc.lock`` is ``flock``'d exclusively for the whole operation. The kernel drops the lock
when its holder dies, even on ``kill -9``, so a crashed gc never blocks the next one; the file
itself stays (removing it would let two processes lock two different inodes). The holder writes
its pid and what it is doing into the file, for the message the next caller sees (best effort:
on a full disk gc still runs, and frees space).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from theoryx.errors import StoreBusy, StoreError

LOCK_NAME = "gc.lock"


class GcLock:
    """Held maintenance lock; a context manager. :class:`StoreBusy` if another process holds it."""

    def __init__(self, home: Path, what: str) -> None:
        self.path = home / LOCK_NAME
        # Never through a link, never blocking on a FIFO: only a regular file is the lock.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o666)  # the home guards it
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise StoreError(f"{self.path} is not a regular file: the theoryx home is damaged (remove it; "
                             "the next gc or verify makes it again)")
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            os.close(self._fd)
            raise StoreBusy(
                f"the store at {home} is busy: {holder or 'another gc or verify --repair'} holds {self.path}; "
                "try again when it has finished"
            ) from None
        _note(self._fd, f"{what} (pid {os.getpid()})\n".encode())

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> GcLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _note(fd: int, text: bytes) -> None:
    """Write the holder's ``text`` over the last one, then cut what is left of it: the page the
    last holder wrote is rewritten in place, so that on a full disk (where gc is what frees space)
    taking the lock needs no new block. Where even that finds no room (the file was empty) the
    text is skipped: it is only for the next caller's message."""
    try:
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
