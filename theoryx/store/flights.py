"""Single flight per memo key, across processes: one run executes a missing action, identical
runs wait for it and then answer from the cache.

A flight is an exclusive ``flock`` on ``<home>/flight-v1/<key>.lock``. The kernel drops it when
its holder dies (even on ``kill -9``), so a waiter then takes the flight over. The holder
unlinks the file before unlocking; a waiter that locked a file that was unlinked meanwhile (its
inode no longer at the path) retries on the new file, so two holders never coexist. Lock files
therefore exist only while a flight is in the air.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from theoryx.store.home import make_dir

DIRNAME = "flight-v1"


def _name(memo_key: str) -> str:
    return memo_key.replace(":", "-") + ".lock"


class Flight:
    """The right to execute ``memo_key``; use as a context manager. Entering blocks while another
    process (or thread) holds the same key's flight."""

    def __init__(self, home: Path, memo_key: str) -> None:
        self.directory = home / DIRNAME
        self.path = self.directory / _name(memo_key)
        self._fd = -1

    def acquire(self) -> None:
        make_dir(self.directory)  # private, or group-shared like the home
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o666)  # the directory guards it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                try:
                    now = os.stat(self.path)
                except FileNotFoundError:
                    now = None
                if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    self._fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the previous holder unlinked it after we opened it: try the new one

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the lock
            self._fd = -1

    def __enter__(self) -> Flight:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
