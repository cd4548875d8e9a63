"""Following the lease files of in-flight runs while a gc works (see :mod:`theoryx.store.leases`).

Lease files only grow (the owner appends one cid per line), so a watcher keeps each one open and
reads only what was appended since its last :meth:`LeaseWatcher.poll`: a poll costs one
directory listing and one ``fstat`` per lease, cheap enough to do before every deletion. The
watcher never forgets a cid: one that a run listed and released during the gc stays protected
until the gc ends (the run's cache entry protects it from then on).

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

from theoryx.store.leases import is_held

STALE_AFTER_S = 10.0
SUFFIX = ".lease"
_CID = re.compile(rb"b3:[0-9a-f]{64}")


@dataclass
class _Tail:
    fd: int
    ino: int
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
                try:
                    fd = os.open(self.directory / name, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                self._tails[name] = _Tail(fd, os.fstat(fd).st_ino)
        for tail in self._tails.values():
            self._read(tail)
        return self.cids

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
    """Lease files that no process holds and that are older than :data:`STALE_AFTER_S`."""
    now = time.time() if now is None else now
    found = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if now - st.st_mtime > STALE_AFTER_S and not is_held(path):
            found.append(path)
    return found
