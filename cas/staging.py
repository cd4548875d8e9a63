"""Temp files under ``tmp/`` and their atomic publication under ``blobs/``.

A blob becomes visible only by a hard link (or, where hard links are unsupported, a rename) of a
temp file that is complete, read-only and, for a durable store, fsynced. A process killed at any
moment therefore leaves at most a stray temp file, never a partial blob. Publishing onto an
existing blob is a success that refreshes the blob's mtime, as git does, so that a garbage
collector's grace period protects a blob that was just written again.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from cas.errors import CasError

TEMP_SUFFIX = ".tmp"
BLOB_MODE = 0o444

_ATTEMPTS = 8
_NO_HARDLINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


class TempFile:
    """A private file under ``tmp/`` (random name, created with ``O_EXCL``), read-write.

    Closing it (or leaving its ``with`` block) closes the descriptor and removes the temp name;
    a blob published from it keeps its own name.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def create(cls, tmp_dir: Path) -> TempFile:
        """Create a new temp file in ``tmp_dir``, creating the directory if needed."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            path = temp_name(tmp_dir)
            return cls(os.open(path, flags, 0o600), path)
        except FileNotFoundError:
            make_dirs(tmp_dir, fsync=False)
        path = temp_name(tmp_dir)
        return cls(os.open(path, flags, 0o600), path)

    def close(self) -> None:
        """Close the descriptor and remove the temp name; safe to call twice."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def temp_name(tmp_dir: Path) -> Path:
    """Return a fresh random path in ``tmp_dir`` (not created)."""
    return tmp_dir / f"{os.urandom(16).hex()}{TEMP_SUFFIX}"  # not `secrets`: costly to import


def seal(fd: int, *, fsync: bool) -> None:
    """Make the file read-only (0444) and, if ``fsync``, flush its data and metadata to disk."""
    os.fchmod(fd, BLOB_MODE)
    if fsync:
        os.fsync(fd)


def publish(temp: Path, dest: Path, *, fsync: bool) -> None:
    """Make the sealed file ``temp`` visible at ``dest`` atomically; ``temp`` itself remains.

    An existing ``dest`` counts as success and gets its mtime refreshed. Missing parent
    directories are created. With ``fsync``, the new directory entry is flushed to disk.
    """
    for _ in range(_ATTEMPTS):
        try:
            os.link(temp, dest)
        except FileExistsError:
            if freshen(dest):
                return
            # removed between our link and utime (a concurrent delete or gc): link again
        except FileNotFoundError:
            make_dirs(dest.parent, fsync=fsync)
        except OSError as exc:
            if exc.errno not in _NO_HARDLINKS:
                raise
            _publish_by_rename(temp, dest, fsync=fsync)
            return
        else:
            if fsync:
                fsync_dir(dest.parent)
            return
    raise CasError(f"could not publish {dest}: it kept appearing and disappearing")


def _publish_by_rename(temp: Path, dest: Path, *, fsync: bool) -> None:
    """Publish on a filesystem without hard links.

    Replacing a blob that appeared meanwhile is harmless: both files hold the same bytes.
    """
    if freshen(dest):
        return
    make_dirs(dest.parent, fsync=fsync)
    os.replace(temp, dest)
    if fsync:
        fsync_dir(dest.parent)


def freshen(path: Path) -> bool:
    """Set ``path``'s mtime to now; False if it does not exist.

    A file we may not touch (another user's) still counts as present.
    """
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True
    return True


def make_dirs(path: Path, *, fsync: bool) -> None:
    """Create ``path`` and missing parents; with ``fsync``, flush each new entry to disk."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    except FileNotFoundError:
        make_dirs(path.parent, fsync=fsync)
        make_dirs(path, fsync=fsync)
        return
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Flush the entries of directory ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
