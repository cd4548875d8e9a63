"""The store: immutable blobs named by cid under one root directory.

Writes follow one path (see :mod:`cas.staging`): a private temp file in ``tmp/``, hashed while
it is written, sealed read-only, fsynced, then hard-linked into ``blobs/``. Whatever moment a
process dies at, ``blobs/`` only ever holds complete blobs. The store keeps no state in memory,
so any number of threads and processes may share one root.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cas.blob import Blob
from cas.cid import cid_from_hex
from cas.copying import copy_and_hash, copy_fd, stream_and_hash, write_all
from cas.errors import BlobNotFound, CorruptBlob
from cas.hashing import CHUNK_SIZE, cid_of_bytes, hash_fd
from cas.layout import Layout
from cas.staging import BLOB_MODE, TempFile, freshen, make_dirs, publish, seal, temp_name

_LINK_FALLBACK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


class Store:
    """A content-addressable store rooted at ``root`` (``$THEORYX_HOME/cas-v1``).

    Nothing is created on disk until the first write. ``fsync=False`` skips every fsync, for
    stores whose loss after a power failure is acceptable (tests, scratch); a crash of the
    process still never exposes a partial blob.

    Every method that takes a cid raises :class:`~cas.errors.InvalidCid` for a malformed one
    before touching the filesystem. Filesystem failures surface as ``OSError``.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self._layout = Layout(Path(root).absolute())
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @property
    def root(self) -> Path:
        """The store's root directory (absolute)."""
        return self._layout.root

    # -- writing ---------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> Blob:
        """Store ``data`` and return its identity.

        Storing bytes already present is a success that only refreshes the blob's mtime.
        """
        data = bytes(data)
        blob = Blob(cid_of_bytes(data), len(data))
        if freshen(self.path(blob.cid)):
            return blob
        with TempFile.create(self._layout.tmp_dir) as temp:
            write_all(temp.fd, data)
            self._commit(temp, blob.cid)
        return blob

    def put_file(self, path: Path, *, move: bool = False) -> Blob:
        """Store the content of the file at ``path`` (symlinks followed) and return its identity.

        The file is streamed, never read whole into memory; the cid is computed from the bytes
        actually written into the store. With ``move=False`` the source is left untouched.

        With ``move=True`` the source is consumed: a regular file with a single link is renamed
        into ``tmp/``, hashed there, sealed read-only and linked into place, without copying its
        bytes; on another filesystem, or for a multiply-linked file or a symlink, it is copied
        and then removed. If an error occurs before the blob is published, the file is renamed
        back; a process killed in that window leaves it under ``tmp/`` (never as a partial blob).

        Raises ``OSError`` for a source that cannot be read (``IsADirectoryError`` for a
        directory).
        """
        if move:
            return self._move_in(Path(path))
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self._ingest_fd(fd)
        finally:
            os.close(fd)

    def put_stream(self, fileobj: BinaryIO) -> Blob:
        """Store what ``fileobj`` yields from its position to its end; return its identity.

        The bytes are hashed while they are copied; the stream is not closed.
        """
        with TempFile.create(self._layout.tmp_dir) as temp:
            hexdigest, size = stream_and_hash(fileobj, temp.fd, writeback=self._fsync)
            blob = Blob(cid_from_hex(hexdigest), size)
            self._commit(temp, blob.cid)
        return blob

    # -- reading ---------------------------------------------------------------------------

    def path(self, cid: str) -> Path:
        """Return where blob ``cid`` lives (it may not exist). The file must never be written."""
        return self._layout.blob_path(cid)

    def exists(self, cid: str) -> bool:
        """Return True if blob ``cid`` is in the store (its content is not checked)."""
        return self.stat(cid) is not None

    def stat(self, cid: str) -> Blob | None:
        """Return blob ``cid``'s identity with its size on disk, or None if it is absent."""
        try:
            st = os.stat(self.path(cid))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Blob(cid, st.st_size) if stat.S_ISREG(st.st_mode) else None

    def open(self, cid: str) -> BinaryIO:
        """Open blob ``cid`` for reading (content not checked). Raises :class:`BlobNotFound`."""
        try:
            return open(self.path(cid), "rb")
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BlobNotFound(cid) from exc

    def open_verified(self, cid: str) -> BinaryIO:
        """Open blob ``cid`` for streaming; reading it to the end raises :class:`CorruptBlob` if
        its bytes do not match the cid (see :class:`cas.reader.VerifiedReader`). Raises
        :class:`BlobNotFound`."""
        from cas.reader import VerifiedReader

        return io.BufferedReader(VerifiedReader(self.open(cid), cid), CHUNK_SIZE)

    def read(self, cid: str) -> bytes:
        """Return blob ``cid``'s bytes after checking them against the cid.

        Meant for small blobs such as manifests; stream large ones with :meth:`open`.
        Raises :class:`BlobNotFound` or :class:`CorruptBlob`.
        """
        with self.open(cid) as reader:
            data = reader.read()
        actual = cid_of_bytes(data)
        if actual != cid:
            raise CorruptBlob(cid, actual)
        return data

    def verify(self, cid: str) -> bool:
        """Rehash blob ``cid``: True if its bytes match the cid, False if it is corrupt.

        A corrupt blob is left in place for the caller to deal with.
        Raises :class:`BlobNotFound`.
        """
        try:
            fd = os.open(self.path(cid), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BlobNotFound(cid) from exc
        try:
            hexdigest, _ = hash_fd(fd)
        finally:
            os.close(fd)
        return cid_from_hex(hexdigest) == cid

    def iter_blobs(self) -> Iterator[Blob]:
        """Yield every published blob in cid order; temp files and stray names are skipped."""
        return self._layout.scan_blobs()

    def tmp_files(self) -> Iterator[Path]:
        """Yield the temp files under ``tmp/``: writes in progress or abandoned by a crash.

        Only a collector that knows no write still uses one (e.g. by its age) may remove it.
        """
        return self._layout.scan_temps()

    # -- maintenance -----------------------------------------------------------------------

    def delete(self, cid: str) -> bool:
        """Remove blob ``cid``; True if it was there. Links made by :meth:`link_to` survive."""
        try:
            os.unlink(self.path(cid))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    # -- two-phase removal, for a garbage collector ------------------------------------------

    def withdraw(self, cid: str) -> bool:
        """Move blob ``cid`` out of sight into ``trash/`` by one atomic rename; True if it was there.

        From that instant the store answers as if the blob were deleted: :meth:`exists` is False,
        a writer of the same bytes stores them anew, and a ``touch`` fails. The withdrawn file
        keeps its inode, so its mtime still shows whether anyone freshened the blob before the
        rename. The caller must then :meth:`reinstate` or :meth:`purge` it; until then
        :meth:`withdrawn` lists it (after a crash too).
        """
        trash = self._layout.trash_path(cid)
        for _ in range(2):
            try:
                os.rename(self.path(cid), trash)
            except (FileNotFoundError, NotADirectoryError):
                if not self.exists(cid):
                    return False
                make_dirs(trash.parent, fsync=False)
            else:
                return True
        return False

    def reinstate(self, cid: str) -> bool:
        """Put withdrawn blob ``cid`` back in place; True if it was withdrawn.

        If the same blob was stored again meanwhile, that copy stays and the withdrawn one is
        dropped (both hold the same bytes).
        """
        trash = self._layout.trash_path(cid)
        if not os.path.lexists(trash):
            return False
        publish(trash, self.path(cid), fsync=self._fsync)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(trash)
        return True

    def purge(self, cid: str) -> bool:
        """Remove withdrawn blob ``cid`` for good; True if it was withdrawn."""
        try:
            os.unlink(self._layout.trash_path(cid))
        except FileNotFoundError:
            return False
        return True

    def withdrawn(self) -> Iterator[str]:
        """Yield the cids of blobs withdrawn and neither reinstated nor purged yet."""
        return self._layout.scan_trash()

    def withdrawn_stat(self, cid: str) -> os.stat_result | None:
        """Return the ``stat`` of withdrawn blob ``cid``, or None if it is not withdrawn."""
        try:
            return os.stat(self._layout.trash_path(cid))
        except FileNotFoundError:
            return None

    def shards(self) -> list[str]:
        """The shards blobs are spread over (two hex digits each): units for a parallel scan."""
        return self._layout.shards()

    def iter_shard(self, shard: str) -> Iterator[tuple[str, Path]]:
        """Yield ``(cid, path)`` for the blobs of one shard (see :meth:`shards`), unsorted and
        without a ``stat``: the cheapest walk, for a reader that opens every blob anyway."""
        return self._layout.scan_shard(shard)

    def iter_blob_stats(self) -> Iterator[tuple[str, os.stat_result]]:
        """Like :meth:`iter_blobs`, yielding ``(cid, lstat)`` (the size and the mtime, for a
        collector's grace period), in cid order."""
        return self._layout.scan_blob_stats()

    def touch(self, cid: str) -> None:
        """Set blob ``cid``'s mtime to now, so that a gc grace period protects it.

        Raises :class:`BlobNotFound`.
        """
        try:
            os.utime(self.path(cid))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BlobNotFound(cid) from exc

    def link_to(self, cid: str, dest: Path) -> None:
        """Materialise blob ``cid`` as a new read-only file at ``dest``.

        A hard link where the filesystem allows it (``dest`` then shares the blob's inode: never
        make it writable), otherwise a copy with mode 0444. ``dest``'s directory must exist;
        an existing ``dest`` raises ``FileExistsError``. Raises :class:`BlobNotFound`.
        """
        source = self.path(cid)
        try:
            os.link(source, dest)
        except FileNotFoundError as exc:
            if not self.exists(cid):
                raise BlobNotFound(cid) from exc
            raise
        except OSError as exc:
            if exc.errno not in _LINK_FALLBACK:
                raise
            self._copy_out(cid, Path(dest))

    # -- internals -------------------------------------------------------------------------

    def _commit(self, temp: TempFile, cid: str) -> None:
        seal(temp.fd, fsync=self._fsync)
        publish(temp.path, self.path(cid), fsync=self._fsync)

    def _ingest_fd(self, src: int) -> Blob:
        """Copy an open file into the store, hashing the bytes written."""
        with TempFile.create(self._layout.tmp_dir) as temp:
            hexdigest, size = copy_and_hash(src, temp.fd, writeback=self._fsync)
            blob = Blob(cid_from_hex(hexdigest), size)
            self._commit(temp, blob.cid)
        return blob

    def _move_in(self, path: Path) -> Blob:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return self._copy_then_unlink(path)
        make_dirs(self._layout.tmp_dir, fsync=False)
        temp = temp_name(self._layout.tmp_dir)
        try:
            os.rename(path, temp)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return self._copy_then_unlink(path)
        # A moved-in file keeps its writer's mtime, possibly old (cp -p, tar): refresh it so the
        # gc grace period protects the new blob as it protects any fresh write.
        os.utime(temp)
        try:
            blob = self._adopt(temp)
        except BaseException:
            _put_back(temp, path, stat.S_IMODE(st.st_mode))
            raise
        # Already gone if it was published by rename (a filesystem without hard links).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        return blob

    def _adopt(self, temp: Path) -> Blob:
        """Publish the file renamed to ``temp`` in place, or copy it if that is not safe."""
        fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or before.st_nlink != 1:
                return self._ingest_fd(fd)  # another name for this inode appeared: copy
            try:
                os.fchmod(fd, BLOB_MODE)
            except PermissionError:
                return self._ingest_fd(fd)  # not ours to seal (another user's file): copy
            hexdigest, size = hash_fd(fd)
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                os.lseek(fd, 0, os.SEEK_SET)
                return self._ingest_fd(fd)  # written through an open descriptor meanwhile
            if self._fsync:
                os.fsync(fd)
            blob = Blob(cid_from_hex(hexdigest), size)
            publish(temp, self.path(blob.cid), fsync=self._fsync)
            return blob
        finally:
            os.close(fd)

    def _copy_then_unlink(self, path: Path) -> Blob:
        blob = self.put_file(path, move=False)
        os.unlink(path)
        return blob

    def _copy_out(self, cid: str, dest: Path) -> None:
        try:
            src = os.open(self.path(cid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise BlobNotFound(cid) from exc
        try:
            dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, BLOB_MODE)
            try:
                copy_fd(src, dst)
            except BaseException:
                os.unlink(dest)
                raise
            finally:
                os.close(dst)
        finally:
            os.close(src)


def _put_back(temp: Path, path: Path, mode: int) -> None:
    """Best effort: return a source that failed to move in to where it came from, as it was.

    If even that fails, the file stays under tmp/, where :meth:`Store.tmp_files` reports it.
    """
    with contextlib.suppress(OSError):
        os.chmod(temp, mode)
        os.rename(temp, path)
