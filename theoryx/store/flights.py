"""Single flight per memo key, across processes: one run executes a missing action, identical
runs wait for it and then answer from the cache.

On Linux a flight is an exclusive open-file-description lock (``F_OFD_SETLKW``) on one byte of
``<home>/flight-v2/flights.lock``, at an offset taken from the memo key (60 bits of its hash: two
keys share a byte with probability 2^-60, and then one merely waits for the other). Such a lock
belongs to the open file, not the process: threads of one process exclude each other as
processes do, and the kernel drops it when its holder dies (even on ``kill -9``), so a waiter
then takes the flight over. Nothing is created or removed per flight: the one file is made once
per home. (Creating and removing a file per miss is not free: on an ext4 without a journal the
kernel skips every inode freed in the last minute when it allocates one, so each file removed
makes the next minute's files slower to create; see BENCHMARKS.md.)

Where there are no such locks (macOS, the BSDs), a flight is an exclusive ``flock`` on
``<home>/flight-v1/<key>.lock``: the holder unlinks the file before unlocking; a waiter that
locked a file that was unlinked meanwhile (its inode no longer at the path) retries on the new
file, so two holders never coexist, and lock files exist only while a flight is in the air.

The two kinds do not exclude each other: a theoryx from before ``flight-v2`` and a later one
running the same action at the same moment on one home may both execute it (each result is
valid; the second cache entry replaces the first).
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys
from pathlib import Path
from types import TracebackType

from theoryx.errors import StoreError
from theoryx.store.home import make_dir

DIRNAME = "flight-v2"
LOCK_FILE = "flights.lock"
LEGACY_DIRNAME = "flight-v1"

_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)
_OFD_GETLK: int | None = getattr(fcntl, "F_OFD_GETLK", None)
# struct flock {short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid;} on LP64
# Linux, padded to its 32 bytes (l_pid must be 0 for an OFD lock)
_FLOCK = "@hhqqi4x"
OFD_LOCKS = (sys.platform == "linux" and _OFD_SETLKW is not None and struct.calcsize("@l") == 8
             and struct.calcsize(_FLOCK) == 32)
"""Whether flights are byte locks on one file (Linux), rather than one file per flight."""


def offset(memo_key: str) -> int:
    """The byte of the lock file that stands for ``memo_key`` (``b3:<64 hex>``): the first 60
    bits of its hash."""
    return int(memo_key.rpartition(":")[2][:15], 16)


def _byte_lock(memo_key: str) -> bytes:
    """The ``struct flock`` asking for a write lock on ``memo_key``'s byte."""
    return struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset(memo_key), 1, 0)


def _legacy_name(memo_key: str) -> str:
    return memo_key.replace(":", "-") + ".lock"


def held(home: Path, memo_key: str) -> bool:
    """Whether some open file (another process's, or another flight of this one) holds
    ``memo_key``'s flight now. For tests and diagnostics; racy by nature."""
    if not OFD_LOCKS:
        return (home / LEGACY_DIRNAME / _legacy_name(memo_key)).exists()
    try:
        fd = os.open(home / DIRNAME / LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        assert _OFD_GETLK is not None
        l_type = struct.unpack(_FLOCK, fcntl.fcntl(fd, _OFD_GETLK, _byte_lock(memo_key)))[0]
        return bool(l_type != fcntl.F_UNLCK)
    finally:
        os.close(fd)


class Flight:
    """The right to execute ``memo_key``; use as a context manager. Entering blocks while another
    process (or thread) holds the same key's flight."""

    def __init__(self, home: Path, memo_key: str) -> None:
        self.memo_key = memo_key
        if OFD_LOCKS:
            self.directory = home / DIRNAME
            self.path = self.directory / LOCK_FILE
        else:
            self.directory = home / LEGACY_DIRNAME
            self.path = self.directory / _legacy_name(memo_key)
        self._fd = -1

    def acquire(self) -> None:
        if OFD_LOCKS:
            self._acquire_byte()
        else:
            self._acquire_file()

    def _acquire_byte(self) -> None:
        try:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                make_dir(self.directory)  # private, or group-shared like the home
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o666)  # the directory guards it
        except PermissionError as exc:
            raise StoreError(
                f"cannot open the single-flight lock file {self.path} for writing ({exc.strerror}): in a home "
                f"shared by a group, every member needs a group-writable umask (umask 002) so that the files "
                f"theoryx creates there stay writable for the others (BUILD.md, Permissions); the file's "
                f"owner can fix this one with: chmod g+w {self.path}") from None
        try:
            assert _OFD_SETLKW is not None
            fcntl.fcntl(fd, _OFD_SETLKW, _byte_lock(self.memo_key))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _acquire_file(self) -> None:
        make_dir(self.directory)
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                lock = os.fstat(fd)
                try:
                    now = os.stat(self.path)
                except FileNotFoundError:
                    now = None
                if now is not None and (now.st_dev, now.st_ino) == (lock.st_dev, lock.st_ino):
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
            if not OFD_LOCKS:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing the file drops its lock
            self._fd = -1

    def __enter__(self) -> Flight:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
