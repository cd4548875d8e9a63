"""Deferred durability: many blobs made durable by one filesystem sync.

A durable store fsyncs every blob it publishes, and the directory it is linked into: about
0.3 ms each on this machine's ext4, so a run that stores eight small blobs spends most of its time
waiting for the disk. Inside :meth:`cas.Store.deferred`, a thread's writes skip those fsyncs and
the thread owes one sync instead, paid by :meth:`cas.Store.sync` before anything that names the
blobs is committed elsewhere (a database record, a cache entry).

The sync is ``syncfs(2)`` on the store's filesystem: everything written to that filesystem
before the call is on disk when it returns — file data, inodes, directory entries, whoever wrote
them. That also covers a blob this thread found *already present*, possibly written a moment
ago, unsynced, by another deferred writer (of this process or another): a write that finds its
blob present owes a sync as well. Concurrent callers share syncs (group commit): a caller waits
for the first sync that *starts* after its call, so two threads finishing together pay one.

What it costs: ``syncfs`` flushes the whole filesystem, so its caller also waits for whatever
other programs left dirty. Measured here (ext4 on a virtio disk, 2 CPUs, 2026-11-30): with a few
small files pending, 0.45-0.7 ms per ``syncfs`` against 1.0-1.3 ms for fsyncing four files and
then their directory, and ~0.35 ms per blob fsynced with its directory as it is published; but
``syncfs`` also waits for ~0.4 ms per MiB that other programs have written and not synced (see
:data:`DIRTY_LIMIT`; 75 ms with 300 MB, against 2 ms for one small file's fsync). So a store
defers only while the machine holds little dirty data
(:func:`worth_deferring`: at most :data:`DIRTY_LIMIT` bytes dirty or under write-back, from
``/proc/meminfo``, looked at when a deferred block begins); otherwise the block's writes are
fsynced one by one as they are published, as outside it. Either way the blobs are durable before
anything names them; only the cost differs.

Where ``syncfs`` is unavailable (not Linux, or no C library to call it through), or the store's
filesystem is not one whose ``syncfs`` is known to flush (:data:`SYNCFS_FILESYSTEMS`), stores
never defer.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from cas import libc


def syncfs() -> Callable[[int], int] | None:
    """The C library's ``syncfs``, or None where there is none (then nothing defers)."""
    return libc.function("syncfs", ("c_int",), "c_int")  # type: ignore[no-any-return]


DIRTY_LIMIT = 4 << 20
"""Bytes dirty or under write-back, machine-wide, above which a deferred block does not defer:
its ``syncfs`` would wait for them. Measured here (medians of 5) with N MiB just written, unsynced,
by another process: ``syncfs`` after four small files 0.7 / 7.5 / 15.7 / 24.9 ms for N = 0 / 16 /
32 / 64, against 2.4-3.2 ms whatever N for six small files each fsynced with its directory (what a
miss costs without deferring): ``syncfs`` pays ~0.4 ms per MiB of other programs' dirty data."""

_MEMINFO = "/proc/meminfo"


def dirty_bytes() -> int | None:
    """Bytes of file data dirty or under write-back on this machine (``/proc/meminfo``), or None
    if that cannot be read."""
    try:
        fd = os.open(_MEMINFO, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 16384)
    except OSError:
        return None
    finally:
        os.close(fd)
    total = 0
    for field in (b"\nDirty:", b"\nWriteback:"):
        start = data.find(field)
        if start < 0:
            return None
        try:
            total += int(data[start + len(field):data.index(b"kB", start)]) * 1024
        except ValueError:
            return None
    return total


def worth_deferring() -> bool:
    """True if deferring fsyncs to one ``syncfs`` pays here and now: ``syncfs`` exists and the
    machine holds at most :data:`DIRTY_LIMIT` bytes of dirty data (see the module docstring)."""
    if syncfs() is None:
        return False
    dirty = dirty_bytes()
    return dirty is not None and dirty <= DIRTY_LIMIT


SYNCFS_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs", "overlay", "tmpfs"})
"""Filesystems whose ``syncfs`` is known to flush what a per-file fsync would (local disks; an
overlay syncs its upper layer; tmpfs holds nothing durable anyway). Elsewhere — a FUSE
filesystem may answer ``syncfs`` without doing anything, a network one may not flush the
server — a store does not defer: it fsyncs each blob as it always did."""

_MOUNTINFO = "/proc/self/mountinfo"
_TYPES: dict[int, str | None] = {}   # st_dev -> filesystem type, as found in _MOUNTINFO


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (``ext4``, ``fuse.sshfs``, ...) from
    ``/proc/self/mountinfo``, or None if that cannot be told. ``path`` need not exist: its
    nearest existing ancestor is looked up. Remembered per filesystem (its device number):
    reading the mount table costs ~0.2 ms where there are many mounts, and every store opened
    in a process (one per home) asks once."""
    where = os.fspath(path)
    while True:
        try:
            dev = os.stat(where).st_dev
            break
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(where)
            if parent == where:
                return None
            where = parent
        except OSError:
            return None
    if dev in _TYPES:
        return _TYPES[dev]
    real = os.path.realpath(where)
    try:
        with open(_MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = _TYPES[dev] = mount_type(real, lines)
    return found


def mount_type(real: str, mountinfo: list[str]) -> str | None:
    """The type of the filesystem mounted innermost over the resolved path ``real``, by the
    lines of a ``/proc/<pid>/mountinfo`` (the last of mounts stacked on one point wins)."""
    best: tuple[int, str] | None = None
    for line in mountinfo:
        fields = line.split(" ")
        try:
            mount_point = _unescape(fields[4])
            fs_type = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= best[0]):
            best = (len(mount_point), fs_type)   # the last of stacked mounts wins
    return None if best is None else best[1]


def _unescape(field: str) -> str:
    """A mountinfo field with its octal escapes (``\\040`` for a space) decoded."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def can_defer(path: Path) -> bool:
    """True if a store at ``path`` can defer its fsyncs to ``syncfs``: the call exists and the
    filesystem is one of :data:`SYNCFS_FILESYSTEMS`."""
    return syncfs() is not None and filesystem_type(path) in SYNCFS_FILESYSTEMS


def sync_filesystem(path: Path) -> None:
    """``syncfs`` the filesystem holding ``path`` (a directory); raises ``OSError`` on failure
    (since Linux 5.8 that includes write-back errors of the data being flushed)."""
    func = syncfs()
    if func is None:
        raise OSError(f"syncfs is not available on {sys.platform}")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if func(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(path))
    finally:
        os.close(fd)


class SyncGroup:
    """Syncs of one filesystem shared by concurrent callers (group commit); thread-safe.

    :meth:`sync` returns once a sync that started after it was called has completed: only one
    sync runs at a time, and the callers that arrive while it runs are all covered by the next.
    A failed sync raises in every caller it was meant to cover.
    """

    def __init__(self, where: Callable[[], Path], sync: Callable[[Path], None] | None = None) -> None:
        self._where = where      # a directory on the filesystem to sync (looked up per sync)
        self._sync = sync        # None: this module's sync_filesystem, looked up at each sync
        self._cond = threading.Condition(threading.Lock())
        self._started = 0        # syncs started so far
        self._finished = 0       # syncs finished so far (they run one at a time, in order)
        self._running = False
        self._errors: dict[int, OSError] = {}   # sync number -> its error, kept while awaited
        self._waiting: dict[int, int] = {}      # sync number -> callers still to see its outcome
        self.syncs = 0           # syncs performed (for tests and measurements)
        self._owing = 0          # threads whose deferred writes await a sync
        self._owing_lock = threading.Lock()

    @property
    def owing(self) -> int:
        """How many threads of this process have deferred writes not yet synced."""
        return self._owing

    def owe(self, count: int = 1) -> None:
        """A thread starts (1) or stops (-1) owing a sync."""
        with self._owing_lock:
            self._owing += count

    def sync(self) -> None:
        """Block until everything written before this call is durable."""
        with self._cond:
            mine = self._started + 1          # the first sync to start after this call
            while self._finished < mine:
                if not self._running:
                    self._running = True
                    self._started += 1
                    number = self._started
                    self._cond.release()
                    error: OSError | None = None
                    try:
                        (self._sync or sync_filesystem)(self._where())
                    except OSError as exc:
                        error = exc
                    except BaseException as exc:  # interrupted: nobody it covers may count on it
                        error = OSError(f"the sync was interrupted: {exc!r}")
                        raise
                    finally:
                        self._cond.acquire()
                        self._running = False
                        self._finished = number
                        self.syncs += 1
                        if error is not None:
                            self._errors[number] = error
                        self._cond.notify_all()
                    continue
                self._waiting[mine] = self._waiting.get(mine, 0) + 1
                try:
                    self._cond.wait()
                finally:
                    left = self._waiting[mine] - 1
                    if left:
                        self._waiting[mine] = left
                    else:
                        del self._waiting[mine]
            failed = self._errors.get(mine)
            if failed is not None and mine not in self._waiting:
                del self._errors[mine]           # the last caller to see it
            if failed is not None:
                raise failed


class Deferral:
    """One thread's state: ``depth`` counts its nested :meth:`cas.Store.deferred` blocks,
    ``active`` says whether the outermost one defers (decided when it began), ``owed`` whether a
    deferred write awaits a sync."""

    __slots__ = ("active", "depth", "owed")

    def __init__(self) -> None:
        self.depth = 0
        self.active = False
        self.owed = False


class Deferrals(threading.local):
    """Per thread: the :class:`Deferral` of the calling thread."""

    def __init__(self) -> None:
        self.current = Deferral()
