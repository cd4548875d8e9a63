"""Temp files under ``tmp/`` and their atomic publication under ``blobs/``.

A blob becomes visible only by a hard link (or, where hard links are unsupported, a rename) of a
temp file that is complete, read-only and, for a durable store, fsynced. A process killed at any
moment therefore leaves at most a stray temp file, never a partial blob. Publishing onto an
existing blob is a success that refreshes the blob's mtime, as git does, so that a garbage
collector's grace period protects a blob that was just written again.

A temp file is ``flock``'d by its writer for its whole life, so a collector can tell a write in
progress from one abandoned by a crash whatever their ages (:func:`remove_if_abandoned`).
Publishing always converges: if the blob at the destination vanishes between our attempt to
link and our attempt to freshen it (a collector withdrawing it), or holds the wrong number of
bytes (a damaged copy), the temp is linked under a second temp name and renamed over the
destination, which replaces whatever is there in one atomic step.

Small blobs written from memory use an *unnamed* temp file where Linux offers one
(``O_TMPFILE``, :func:`open_anonymous`): it has no name until it is linked into ``blobs/``
(:func:`publish_anonymous`), so there is nothing to lock against a collector, nothing to remove
afterwards, and a process killed before the link leaves nothing at all. Elsewhere they take the
named path above.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType

from cas.errors import CasError

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Self

TEMP_SUFFIX = ".tmp"
BLOB_MODE = 0o444

_ATTEMPTS = 8
_NO_HARDLINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL})


class TempFile:
    """A private file under ``tmp/`` (random name, created with ``O_EXCL``), read-write and
    exclusively ``flock``'d until it is closed, so that no collector removes it mid-write.

    Closing it (or leaving its ``with`` block) closes the descriptor and removes the temp name;
    a blob published from it keeps its own name.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def create(cls, tmp_dir: Path) -> TempFile:
        """Create a new locked temp file in ``tmp_dir``, creating the directory if needed."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        while True:
            path = temp_name(tmp_dir)
            try:
                fd = os.open(path, flags, 0o600)
            except FileNotFoundError:
                make_dirs(tmp_dir, fsync=False)
                fd = os.open(path, flags, 0o600)
            if lock_named(fd, path):
                return cls(fd, path)
            os.close(fd)  # a collector removed it before we locked it: take another name

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


def lock_named(fd: int, path: Path) -> bool:
    """``flock`` ``fd`` exclusively (waiting), then check that ``path`` still names its file.

    False if a collector unlinked the name in the moment between its creation and the lock: the
    caller must not use it. Once this returned True, :func:`remove_if_abandoned` leaves the file
    alone until ``fd`` is closed.
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def remove_if_abandoned(path: Path, older_than_s: float, now: float, *, remove: bool = True) -> int | None:
    """Remove the temp file ``path`` if no writer holds it and it is older than ``older_than_s``
    (by mtime and ctime: a file renamed into ``tmp/`` keeps its old mtime); return its size, or
    None if it was kept (in use, young, already gone, or not a regular file). With ``remove``
    False, only say so (a dry run).

    The age test is made while holding the file's lock, so a writer that locks it afterwards sees
    its name gone (:func:`lock_named`) and starts again under a new one.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a write in progress
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or now - max(st.st_mtime, st.st_ctime) <= older_than_s:
            return None
        try:
            named = os.lstat(path)
        except FileNotFoundError:
            return None
        if (named.st_dev, named.st_ino) != (st.st_dev, st.st_ino):
            return None
        if remove:
            os.unlink(path)
        return st.st_size
    finally:
        os.close(fd)


def temp_name(tmp_dir: Path) -> Path:
    """Return a fresh random path in ``tmp_dir`` (not created)."""
    return tmp_dir / f"{os.urandom(16).hex()}{TEMP_SUFFIX}"  # not `secrets`: costly to import


def seal(fd: int, *, fsync: bool) -> None:
    """Make the file read-only (0444) and, if ``fsync``, flush its data and metadata to disk."""
    os.fchmod(fd, BLOB_MODE)
    if fsync:
        os.fsync(fd)


def open_anonymous(tmp_dir: Path) -> int | None:
    """A new unnamed file (``O_TMPFILE``) on ``tmp_dir``'s filesystem, open read-write, for
    :func:`publish_anonymous`; ``tmp_dir`` is created if needed. None where there is no such
    file: not Linux, a filesystem or kernel without ``O_TMPFILE``, or no ``/proc/self/fd`` (the
    only way to link it without privileges). Close it whatever happens: unlinked, it vanishes."""
    if not _O_TMPFILE or not _proc_fd():
        return None
    flags = _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
    for attempt in range(2):
        try:
            return os.open(tmp_dir, flags, 0o600)
        except FileNotFoundError:
            if attempt:
                raise
            make_dirs(tmp_dir, fsync=False)
        except OSError as exc:
            if exc.errno in _NO_TMPFILE:
                return None
            raise
    return None  # not reached: the second attempt returns or raises


_PROC_FD: list[bool] = []


def _proc_fd() -> bool:
    """Whether ``/proc/self/fd`` is there (looked up once per process)."""
    if not _PROC_FD:
        _PROC_FD.append(os.path.isdir("/proc/self/fd"))
    return _PROC_FD[0]


def _link_anonymous(fd: int, dest: str) -> None:
    """Give the unnamed file open as ``fd`` the absolute name ``dest``: ``linkat`` of its
    ``/proc/self/fd`` entry, following that link. ``dst_dir_fd`` only makes CPython call
    ``linkat`` (with ``AT_SYMLINK_FOLLOW``) instead of ``link``; ``linkat`` ignores it for an
    absolute ``dest``."""
    os.link(f"/proc/self/fd/{fd}", dest, dst_dir_fd=fd, follow_symlinks=True)


def publish_anonymous(fd: int, size: int, dest: str, *, fsync: bool, aux_dir: Path) -> bool | None:
    """:func:`publish` for the sealed unnamed file open as ``fd`` (from :func:`open_anonymous`,
    ``size`` bytes) at the absolute path ``dest``: True if an existing blob of that size was kept
    (its mtime refreshed), False if the file was published; None if this filesystem cannot link
    it (no hard links): nothing was published, the caller writes a named temp file instead. A
    damaged copy (another size) or one withdrawn meanwhile is replaced atomically through a
    second name in ``aux_dir``, as :func:`publish` does. With ``fsync``, the new directory entry
    (and any directory created for it) is flushed to disk."""
    if not os.path.isabs(dest):
        raise ValueError(f"not an absolute path: {dest}")
    for _ in range(_ATTEMPTS):
        try:
            _link_anonymous(fd, dest)
        except FileExistsError:
            if _keep_existing_size(dest, size):
                return True
            _replace(f"/proc/self/fd/{fd}", Path(dest), aux_dir, fsync=fsync, anonymous=fd)
            return False
        except FileNotFoundError:
            make_dirs(os.path.dirname(dest), fsync=fsync)
        except OSError as exc:
            if exc.errno in _NO_HARDLINKS or exc.errno == errno.EXDEV:
                return None
            raise
        else:
            if fsync:
                fsync_dir(os.path.dirname(dest))
            return False
    raise CasError(f"could not publish {dest}: its directory kept disappearing")


def publish(temp: Path, dest: str | Path, *, fsync: bool, aux_dir: Path | None = None) -> bool:
    """Make the sealed file ``temp`` visible at ``dest`` atomically; ``temp`` itself remains.
    Returns True if an existing blob was kept (nothing of ``temp`` was published).

    An existing ``dest`` of ``temp``'s size counts as success and gets its mtime refreshed; one
    of another size is damaged and is replaced. If ``dest`` vanishes between the two (a
    concurrent withdrawal), ``temp`` is linked under a fresh name in ``aux_dir`` (default: its
    own directory; it must be on the same filesystem) and renamed over ``dest``: that never
    fails because something appeared or disappeared, so publishing ends after a bounded number
    of steps however often a collector withdraws and reinstates the blob. Missing parent
    directories are created. With ``fsync``, the new directory entry is flushed to disk.

    Raises :class:`~cas.errors.CasError` if ``temp`` itself is gone (removed behind the
    writer's back); ``OSError`` for a failure of the filesystem.
    """
    for _ in range(_ATTEMPTS):
        try:
            os.link(temp, dest)
        except FileExistsError:
            if _keep_existing(temp, dest):
                return True
            # Withdrawn between our link and our look at it, or damaged: replace, atomically.
            _replace(temp, Path(dest), aux_dir or temp.parent, fsync=fsync)
            return False
        except FileNotFoundError:
            if not os.path.lexists(temp):
                raise CasError(f"could not publish {dest}: its temp file {temp} was removed while it was "
                               f"written (a cleanup that ignored the writer's lock?)") from None
            make_dirs(Path(dest).parent, fsync=fsync)
        except OSError as exc:
            if exc.errno not in _NO_HARDLINKS:
                raise
            return _publish_by_rename(temp, Path(dest), fsync=fsync)
        else:
            if fsync:
                fsync_dir(os.path.dirname(dest))
            return False
    raise CasError(f"could not publish {dest}: its directory kept disappearing")


def _keep_existing(temp: Path, dest: str | Path) -> bool:
    """True if ``dest`` exists with ``temp``'s size (its mtime now refreshed): nothing to write."""
    try:
        size = os.stat(temp).st_size
    except FileNotFoundError:
        return False  # temp gone, which _replace reports
    return _keep_existing_size(dest, size)


RECHECK_EXISTING = 1 << 20
"""An existing blob of the right size up to this many bytes is re-hashed before it is kept: a
copy damaged in place (same size, other bytes) is then replaced by the bytes being written, so
re-running repairs it. Larger ones are trusted on their size (re-reading them would cost as much
as the write saved); reads still hash every blob, so a damaged one is never served."""


def _keep_existing_size(dest: str | Path, size: int) -> bool:
    """True if ``dest`` exists with ``size`` bytes (its mtime now refreshed) and, when small,
    its bytes still hash to its name: nothing to write."""
    try:
        existing = os.stat(dest)
    except FileNotFoundError:
        return False  # dest withdrawn meanwhile
    if existing.st_size != size:
        return False
    if size <= RECHECK_EXISTING and not intact_in_place(dest):
        return False
    return freshen(dest)


READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
"""How the store opens a blob to read it: never following a link in its place, never blocking on a
FIFO (its type is then checked with ``fstat``: only a regular file is a blob)."""


def intact_in_place(dest: str | Path) -> bool:
    """Whether the blob at ``dest`` (``.../<2 hex>/<62 hex>``), at most :data:`RECHECK_EXISTING`
    bytes, still hashes to that name."""
    import blake3

    path = os.fspath(dest)
    expected = os.path.basename(os.path.dirname(path)) + os.path.basename(path)
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False        # a FIFO, a device, a directory: no blob (and never read: it could block)
        with open(fd, "rb", closefd=False) as f:
            return blake3.blake3(f.read(RECHECK_EXISTING + 1)).hexdigest() == expected
    except OSError:
        return False
    finally:
        os.close(fd)


def _replace(temp: Path | str, dest: Path, aux_dir: Path, *, fsync: bool, anonymous: int | None = None) -> None:
    """Rename a second link of ``temp`` over ``dest`` (same bytes, or a damaged copy's place).
    ``anonymous``: ``temp`` is the ``/proc/self/fd`` entry of that unnamed file's descriptor."""
    aux = temp_name(aux_dir)

    def link() -> None:
        if anonymous is None:
            os.link(temp, aux)
        else:
            _link_anonymous(anonymous, str(aux))

    try:
        link()
    except FileNotFoundError:
        if not os.path.lexists(temp):
            raise CasError(f"could not publish {dest}: its temp file {temp} was removed while it was "
                           f"written (a cleanup that ignored the writer's lock?)") from None
        make_dirs(aux_dir, fsync=False)
        link()
    try:
        try:
            os.rename(aux, dest)
        except FileNotFoundError:  # dest's directory is gone too
            make_dirs(dest.parent, fsync=fsync)
            os.rename(aux, dest)
    finally:
        # rename() between two links of one inode does nothing and leaves ``aux``.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aux)
    if fsync:
        fsync_dir(dest.parent)


def _publish_by_rename(temp: Path, dest: Path, *, fsync: bool) -> bool:
    """Publish on a filesystem without hard links.

    Replacing a blob that appeared meanwhile is harmless: both files hold the same bytes.
    """
    if freshen(dest):
        return True
    make_dirs(dest.parent, fsync=fsync)
    os.replace(temp, dest)
    if fsync:
        fsync_dir(dest.parent)
    return False


def freshen(path: str | Path) -> bool:
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


def flush_existing(path: str) -> None:
    """Flush the file at ``path`` (data and size) and its directory entry to disk: a blob a
    durable write found already stored that may not be durable yet (see
    :meth:`cas.Store.deferred`). Cheap when it is already durable (no data to write). A blob
    gone meanwhile is left to whoever looks for it next."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        _fdatasync(fd)
    finally:
        os.close(fd)
    fsync_dir(os.path.dirname(path))


_fdatasync = getattr(os, "fdatasync", os.fsync)  # data and size, not the refreshed mtime


def make_dirs(path: Path | str, *, fsync: bool) -> None:
    """Create ``path`` and missing parents; with ``fsync``, flush each new entry to disk.

    A new directory takes its permissions from its parent, whatever the umask: the owner's
    ``rwx``, the parent's group bits and set-group-id bit, and nothing for others. A store under
    a private directory stays private; one under a group-shared directory (``chmod 2770``)
    stays shared with that group; no store directory is ever open to every local user. (The
    directory is created with those bits, and changed only when the umask took some away: a
    shard directory of a new store costs one ``mkdir`` and two ``stat`` calls.)
    """
    path = os.fspath(path)
    parent = os.path.dirname(path)
    try:
        wanted = 0o700 | (os.stat(parent).st_mode & DIR_MODE_MASK)
        os.mkdir(path, wanted & 0o777)
    except FileExistsError:
        return
    except FileNotFoundError:
        make_dirs(parent, fsync=fsync)
        make_dirs(path, fsync=fsync)
        return
    try:
        if stat.S_IMODE(os.stat(path).st_mode) != wanted:
            os.chmod(path, wanted)
    except FileNotFoundError:
        pass
    if fsync:
        fsync_dir(parent)


DIR_MODE_MASK = 0o2070
"""What a new directory inherits from its parent's mode: group bits and set-group-id."""


def inherit_mode(path: Path) -> None:
    """Set directory ``path``'s mode to ``0700`` plus its parent's group bits and set-group-id
    (see :func:`make_dirs`); the umask plays no part. Best effort: a parent we cannot ``stat``
    leaves the directory private."""
    try:
        wanted = 0o700 | (os.stat(path.parent).st_mode & DIR_MODE_MASK)
        if stat.S_IMODE(os.stat(path).st_mode) != wanted:
            os.chmod(path, wanted)
    except FileNotFoundError:
        pass


def fsync_dir(path: str | Path) -> None:
    """Flush the entries of directory ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
