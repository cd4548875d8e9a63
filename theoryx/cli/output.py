"""Shared CLI output helpers: showing outputs and writing the files a user names.

A file the CLI writes for the user (``--out``, ``--save-first``, ``--save-dir``) is either
replaced whole or left as it was: a regular file, or one that does not exist yet, is written
to an unnamed file in its directory (``O_TMPFILE``; a process killed while writing leaves
nothing behind) and, when complete, given a temp name and renamed into place (with the mode a
new file gets under the umask, or the replaced file's own mode). Where the filesystem has no
unnamed files, a named temp file beside the target is written instead. Anything else that exists — ``/dev/null``, a
FIFO, a terminal, a socket — is written through, as a shell redirection would; it is never
replaced by a regular file. A directory, or a path that cannot be created, is a
:class:`~theoryx.errors.UsageError` before anything is written.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO

from theoryx.budget.money import dollars
from theoryx.errors import UsageError

__all__ = ["OutputFile", "atomic_write", "dollars"]


class OutputFile:
    """One file the CLI writes for the user (see the module's contract). ``stream`` is open for
    writing (text, or bytes with ``binary``); :meth:`commit` puts what was written in place,
    :meth:`abandon` leaves the target as it was. ``what`` names the option in messages."""

    def __init__(self, path: Path, *, what: str = "--out", binary: bool = False) -> None:
        self.path = path
        self.tmp: Path | None = None
        self.unnamed = False          # written to an O_TMPFILE file, named only at commit
        mode = "wb" if binary else "w"
        encoding = None if binary else "utf-8"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise UsageError(f"cannot write {what} {path}: {exc.strerror}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise UsageError(f"cannot write {what} {path}: it is a directory")
        try:
            if st is not None and not stat.S_ISREG(st.st_mode):
                self.stream: IO[str] | IO[bytes] = open(path, mode, encoding=encoding)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            perm = stat.S_IMODE(st.st_mode) if st is not None else 0o666   # the umask applies to 0o666
            fd = _unnamed(path.parent, perm)
            self.unnamed = fd is not None
            if fd is None:
                self.tmp = self._temp_name()
                fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perm)
            if st is not None:
                os.fchmod(fd, perm)
            self.stream = open(fd, mode, encoding=encoding)
        except OSError as exc:
            raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}") from None

    def _temp_name(self) -> Path:
        return self.path.with_name(f".{self.path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")

    def commit(self) -> None:
        """Flush and close; the written file is renamed over the target (the target is complete)."""
        try:
            if self.unnamed:
                self.stream.flush()
                tmp = self._temp_name()
                _link_unnamed(self.stream.fileno(), tmp)
                self.tmp = tmp
            self.stream.close()
            if self.tmp is not None:
                os.replace(self.tmp, self.path)
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Close and remove the temp file: the target keeps what it had. Idempotent."""
        try:
            self.stream.close()
        except OSError:
            pass
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def check_target(path: Path, *, what: str, directory: bool = False, verb: str | None = None) -> None:
    """:class:`UsageError` now if ``path`` can never be written as ``what`` asks — a file where a
    directory is wanted or the other way round, a parent that is a file, or a directory where
    nothing can be created (no permission, a read-only mount, ``/proc``) — so that a run is not
    paid for before its result cannot be saved. Writability is probed by creating and removing
    an empty directory in the directory the save would write in (or its nearest existing
    ancestor); nothing is left behind."""
    doing = verb or f"write {what}"
    try:
        if path.exists():
            if directory and not path.is_dir():
                raise UsageError(f"{what} {path} is not a directory")
            if not directory and path.is_dir():
                raise UsageError(f"{what} {path} is a directory")
            _probe(path if directory else path.parent)
            return
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"cannot {doing} {path}: {parent} is not a directory")
        _probe(parent)
    except OSError as exc:      # a name too long, a loop of links, no permission, a read-only mount...
        where = f" in {exc.filename}" if exc.filename and str(exc.filename) != str(path) else ""
        raise UsageError(f"cannot {doing} {path}: {exc.strerror or exc}{where}") from None


def _probe(directory: Path) -> None:
    """Raise the :class:`OSError` that creating an entry in ``directory`` meets (the probe, an
    empty directory with a private name, is removed at once)."""
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".theoryx-probe-", dir=directory))
    except OSError as exc:      # named after the directory, not the probe's random name
        raise OSError(exc.errno, exc.strerror, str(directory)) from None


def _unnamed(directory: Path, perm: int) -> int | None:
    """A descriptor of a new unnamed file in ``directory`` (``O_TMPFILE``), or None where the
    platform, the kernel or the filesystem has none (then a named temp file is used)."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, flag | os.O_WRONLY | os.O_CLOEXEC, perm)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise


def _link_unnamed(fd: int, name: Path) -> None:
    """Give the unnamed file ``fd`` the name ``name``: ``linkat`` of ``/proc/self/fd/<fd>``
    with ``AT_SYMLINK_FOLLOW`` (``os.link`` passes that flag only when a directory descriptor
    is given: plain ``link`` would try to link the ``/proc`` entry itself)."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def atomic_write(path: Path, data: bytes, *, what: str = "--out") -> None:
    """Write ``data`` to ``path`` whole (see the module's contract)."""
    out = OutputFile(path, what=what, binary=True)
    try:
        out.stream.write(data)   # type: ignore[arg-type]
    except BaseException:
        out.abandon()
        raise
    out.commit()
