"""In-flight leases: one ``flock``'d file per running ``theoryx run`` (gc roots).

A lease file lists, one per line, the cids its run wrote or is about to reference. The owner
holds an exclusive ``flock`` for its whole life; a lease whose lock can be taken belongs to a
process that is gone (the kernel drops flocks when a process dies, even on ``kill -9``).
"""

from __future__ import annotations

import _thread
import errno
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

_SEEN_MAX = 65_536
"""How many recently added cids a lease remembers, to skip writing them again (~8 MiB at most)."""


class Lease:
    """A held lease. Use as a context manager; ``add`` appends cids durably enough for gc
    (gc and the owner are on the same machine, so the page cache is the truth)."""

    def __init__(self, directory: Path, owner: str) -> None:
        self.owner = owner
        self.path = directory / f"{owner}.lease"
        self._seen: set[str] = set()
        self._lock = _thread.allocate_lock()   # not `threading`: a single hit never loads it
        # Locked under a private name, then renamed: a lease file is never visible unheld.
        temp = directory / f".{owner}.{os.getpid()}.tmp"
        self._fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            os.link(temp, self.path)  # fails if the name exists, like O_EXCL
        except BaseException:
            os.close(self._fd)
            raise
        finally:
            temp.unlink(missing_ok=True)

    def add(self, cids: Iterable[str]) -> None:
        """Append ``cids`` not appended lately (a batch's items lease the same spec, context
        and attachment blobs again and again: a file of 1,000,000 identical items leases a
        handful of cids, not millions). Lines already written stay until the lease is released."""
        # Under the lock, and remembered only once written: a batch's threads share one lease,
        # and a thread that finds a cid remembered must find it in the file too (gc reads that).
        with self._lock:
            seen = self._seen
            fresh = [c for c in cids if c not in seen]
            if not fresh:
                return
            os.write(self._fd, "".join(f"{c}\n" for c in fresh).encode())
            if len(seen) >= _SEEN_MAX:    # bounded memory: forgetting only means writing a line again
                seen.clear()
            seen.update(fresh)

    def release(self) -> None:
        if self._fd >= 0:
            try:
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_lease(path: Path) -> int | None:
    """A read-only descriptor of the lease file at ``path``, or None if there is none: gone, or
    something else in a lease's place (a FIFO, which a blocking open would wait on forever; a
    directory; a link, never followed). Such a stray is no lease: nobody holds it, and gc
    removes it once it is older than :data:`~theoryx.store.gc.watch.STALE_AFTER_S`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.ENOTDIR):
            return None
        raise       # EACCES included: a lease gc cannot read may be live; never taken for a stray
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def is_held(path: Path) -> bool:
    """True if a live process holds the lease at ``path`` (a stray that is no regular file: never)."""
    fd = open_lease(path)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def leased_cids(directory: Path) -> Iterator[tuple[Path, bool, set[str]]]:
    """Every lease file, whether it is held, and the cids it lists."""
    for path in sorted(directory.glob("*.lease")):
        fd = open_lease(path)
        if fd is None:
            continue
        with open(fd, "rb") as f:
            cids = set(f.read().decode("utf-8", "replace").split())
        yield path, is_held(path), cids
