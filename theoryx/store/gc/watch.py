"""Following the lease files of in-flight runs while a gc works (see :mod:`theoryx.store.leases`).

Lease files only grow (the owner appends one cid per line), so a watcher keeps each one open and
reads only what was appended since its last :meth:`LeaseWatcher.poll`: a poll costs one
directory listing and one ``fstat`` per lease, cheap enough to do before every deletion. The
watcher never forgets a cid: one that a run listed and released during the gc stays protected
until the gc ends (the run's cache entry protects it from then on).

The watcher also knows when the oldest run in flight began (:meth:`LeaseWatcher.in_flight_since`):
a blob written or freshened since then may belong to a run that has not listed it yet (a run
lists what it writes *after* hashing it, and a blob it found already stored only had its mtime
refreshed), so gc keeps it whatever the grace period. This makes gc safe against every order in
which a run writes and leases, not only the documented one.

A lease file that nobody holds belongs to a run that is gone. It is *stale*, and removed, only
once it is also older than :data:`STALE_AFTER_S`: a new lease exists for a moment between its
creation and its ``flock``, and must not be taken for a dead one.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from theoryx.core.ids import is_execution_id, timestamp_ms
from theoryx.store.leases import is_held, open_lease

STALE_AFTER_S = 10.0
CLOCK_SLACK_S = 2.0
"""How much earlier than a run's start a blob's mtime may read and still count as written during
the run: file times come from the kernel's coarse clock (a tick behind), or from a file server."""
SUFFIX = ".lease"
_CID = re.compile(rb"b3:[0-9a-f]{64}")


@dataclass
class _Tail:
    fd: int
    ino: int
    started: float
    """When the lease's run began (seconds): its execution id's time, else the file's ctime."""
    offset: int = 0
    rest: bytes = b""


@dataclass
class LeaseWatcher:
    """The cids listed by every lease file seen since the watcher was made. Close it when done."""

    directory: Path
    ignore: frozenset[str] = frozenset()
    """Names of lease files to pass over (stale ones a dry run leaves in place)."""
    cids: set[str] = field(default_factory=set)
    _tails: dict[str, _Tail] = field(default_factory=dict)

    def poll(self) -> set[str]:
        """Read what every lease file appended since the last poll; return all cids seen so far."""
        present: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.endswith(SUFFIX) and entry.name not in self.ignore:
                    present[entry.name] = entry.inode()
        for name, tail in list(self._tails.items()):
            if present.get(name) != tail.ino:
                self._read(tail)  # its last lines, then let it go
                os.close(tail.fd)
                del self._tails[name]
        for name in present:
            if name not in self._tails:
                fd = open_lease(self.directory / name)
                if fd is None:       # gone, or a stray that is no lease file (a FIFO, a directory)
                    continue
                st = os.fstat(fd)
                stem = name[: -len(SUFFIX)]
                started = timestamp_ms(stem) / 1000 if is_execution_id(stem) else st.st_ctime
                self._tails[name] = _Tail(fd, st.st_ino, started)
        for tail in self._tails.values():
            self._read(tail)
        return self.cids

    def in_flight_since(self, mtime: float) -> bool:
        """True if a run in flight at the last :meth:`poll` began before ``mtime`` (give or take
        :data:`CLOCK_SLACK_S`): a blob with that mtime may be one it wrote and has not listed."""
        return any(mtime >= tail.started - CLOCK_SLACK_S for tail in self._tails.values())

    def _read(self, tail: _Tail) -> None:
        size = os.fstat(tail.fd).st_size
        if size <= tail.offset:
            return
        data = tail.rest + os.pread(tail.fd, size - tail.offset, tail.offset)
        tail.offset = size
        complete, _, tail.rest = data.rpartition(b"\n")
        self.cids.update(m.decode() for m in _CID.findall(complete))

    def close(self) -> None:
        for tail in self._tails.values():
            os.close(tail.fd)
        self._tails.clear()

    def __enter__(self) -> LeaseWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stale_leases(directory: Path, now: float | None = None) -> list[Path]:
    """Lease files that no process holds and that are older than :data:`STALE_AFTER_S`; and
    strays named like one that are no regular file (a FIFO, a directory, a link: nobody can hold
    them), as old. gc removes them (a directory with what is under it; a link, not its target)."""
    now = time.time() if now is None else now
    found = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if now - st.st_mtime > STALE_AFTER_S and not is_held(path):
            found.append(path)
    return found
