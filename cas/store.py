"""The store: immutable blobs named by cid under one root directory.

Writes follow one path (see :mod:`cas.staging`): a private temp file in ``tmp/`` (unnamed,
``O_TMPFILE``, for bytes from memory where Linux offers it), hashed while it is written, sealed
read-only, fsynced, then hard-linked into ``blobs/``. Whatever moment a process dies at,
``blobs/`` only ever holds complete blobs. Inside :meth:`Store.deferred`, a thread's writes skip
their fsyncs and :meth:`Store.sync` makes them all durable at once (:mod:`cas.syncing`);
:meth:`Store.put_many` groups the directory flushes of a batch where the store does not defer.
A blob a write finds already stored may be any writer's deferred write, not synced yet: one rule
covers it wherever it is found (a write, :meth:`Store.put_many`, :meth:`Store.ensure_durable`):
inside a deferring block the thread owes the block's sync; elsewhere that copy is flushed at
once, its data and its directory entries (``Store._flush_found``). The store keeps no state in
memory but that durability bookkeeping, so any number of threads and processes may share one root.

Reads that hand bytes out check them against the cid (:meth:`Store.read`,
:meth:`Store.open_verified`, :meth:`Store.check`, ``link_to(..., verify=True)``). A blob found
corrupt on the way out is *quarantined*: moved out of ``blobs/`` into ``quarantine/`` by one
rename, so the store answers "absent" from then on (a cache that validates its entries against
the store misses, and the next write of the same bytes publishes them afresh), while the damaged
file stays for inspection until :meth:`Store.drop_quarantined` removes it.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import fcntl
import io
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from cas.blob import Blob
from cas.cid import cid_from_hex, hex_of
from cas.copying import copy_and_hash, copy_fd, stream_and_hash, write_all
from cas.errors import BlobNotFound, CorruptBlob
from cas.hashing import CHUNK_SIZE, cid_of_bytes, hash_fd
from cas.layout import Layout
from cas.staging import (
    BLOB_MODE,
    READ_FLAGS,
    RECHECK_EXISTING,
    TempFile,
    flush_existing,
    freshen,
    fsync_dir,
    intact_in_place,
    make_dirs,
    open_anonymous,
    publish,
    publish_anonymous,
    remove_if_abandoned,
    seal,
    temp_name,
)

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import BinaryIO

    from cas.syncing import Deferral, Deferrals, SyncGroup

DEDUP_FIRST_SIZE = 1 << 20
"""A file moved in that is at most this large is hashed in place first: if its bytes are already
stored it is just removed (hashing it twice otherwise costs little at this size)."""

NOT_A_FILE = "nothing: it is not a regular file"
""":attr:`CorruptBlob.actual` for a FIFO, device, link or directory found where a blob belongs."""

_INIT_LOCK = _thread.allocate_lock()  # the builtin lock: `threading` stays unimported on a hit

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
        self._tmp = self._layout.tmp_dir   # built once: every write needs it
        self._fsync = fsync
        # Deferred durability (see deferred()): created on first use, so a store that never
        # defers (a cache hit) loads neither threading nor ctypes.
        self._deferrals: Deferrals | None = None
        self._group: SyncGroup | None = None
        self._can_defer: bool | None = None   # syncfs here, on a filesystem it flushes (looked up once)
        self._anonymous = True   # unnamed temp files (O_TMPFILE) work here, until one fails

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __getstate__(self) -> dict[str, object]:
        """A store pickles as its root and settings (a result sent to another process): the
        unpickled store is a fresh one on the same directory, with no deferred writes."""
        return {"root": str(self.root), "fsync": self._fsync}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(Path(str(state["root"])), fsync=bool(state["fsync"]))  # type: ignore[misc]

    @property
    def root(self) -> Path:
        """The store's root directory (absolute)."""
        return self._layout.root

    # -- durability ------------------------------------------------------------------------

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block, blobs written by the calling thread are published without their
        own fsyncs (file and directory); the thread then owes a sync, which :meth:`sync` pays
        (one ``syncfs`` of the store's filesystem, shared with concurrent callers: see
        :mod:`cas.syncing`). A write that finds its blob already present owes one too: that
        copy may be another deferred writer's, not yet synced.

        The caller calls :meth:`sync` before it commits anything that names these blobs;
        leaving the outermost block syncs whatever is still owed, also when it is left by an
        exception (so that a record of the failure, committed afterwards, names durable blobs;
        a failure of that sync is then not raised, so as not to mask the exception).

        Blocks nest; other threads are unaffected. A store without fsync, a platform without
        ``syncfs``, a filesystem whose ``syncfs`` is not known to flush (FUSE, network), or a
        machine holding much dirty data when the outermost block begins (see
        :func:`cas.syncing.worth_deferring`) does not defer: every write is durable when it
        returns, as outside the block. A process killed inside the block still never leaves a
        partial blob: only a power failure can lose the unsynced blobs, and then nothing that
        was committed after a :meth:`sync` names them.
        """
        deferral = self._deferral_state()
        if deferral is None:
            yield
            return
        if deferral.depth == 0:
            from cas import syncing

            deferral.active = syncing.worth_deferring()
        deferral.depth += 1
        try:
            yield
        except BaseException:
            if deferral.depth == 1:
                with contextlib.suppress(OSError):
                    self.sync()
            raise
        else:
            if deferral.depth == 1:
                self.sync()
        finally:
            deferral.depth -= 1
            if deferral.depth == 0:
                deferral.active = False
                if deferral.owed:  # its sync failed: nothing is owed any more, nor known durable
                    deferral.owed = False
                    assert self._group is not None
                    self._group.owe(-1)

    def sync(self) -> None:
        """Make durable every blob the calling thread wrote (or found present) in a
        :meth:`deferred` block since its last sync; nothing to do when it owes none. Raises
        ``OSError`` if the filesystem reports a failure (the blobs may then not be durable)."""
        deferrals = self._deferrals
        if deferrals is None:
            return
        deferral = deferrals.current
        if not deferral.owed:
            return
        assert self._group is not None
        self._group.sync()
        deferral.owed = False
        self._group.owe(-1)

    def _deferral_state(self) -> Deferral | None:
        """The calling thread's deferral, creating the machinery on first use; None when this
        store never defers (no fsync to save, no ``syncfs``, or a filesystem whose ``syncfs`` is
        not known to flush: see :data:`cas.syncing.SYNCFS_FILESYSTEMS`)."""
        if not self._fsync or self._can_defer is False:
            return None
        from cas import syncing

        if self._can_defer is None:
            self._can_defer = syncing.can_defer(self._layout.root)
            if not self._can_defer:
                return None
        if self._deferrals is None:
            with _INIT_LOCK:
                if self._deferrals is None:
                    self._group = syncing.SyncGroup(self._sync_dir)
                    self._deferrals = syncing.Deferrals()
        return self._deferrals.current

    def _sync_dir(self) -> Path:
        """A directory on the filesystem the blobs live on (for ``syncfs``)."""
        blobs = self._layout.blobs_dir
        return blobs if os.path.isdir(blobs) else self._layout.root

    def _durable_now(self) -> bool:
        """Whether a write must fsync as it publishes: a durable store outside a deferred block.
        Inside one, the write is owed to the next :meth:`sync` instead (recorded here)."""
        if not self._fsync:
            return False
        deferrals = self._deferrals
        if deferrals is None:
            return True
        deferral = deferrals.current
        if not deferral.active:
            return True
        if not deferral.owed:
            deferral.owed = True
            assert self._group is not None
            self._group.owe(1)
        return False

    def _flush_found(self, paths: list[str]) -> None:
        """Blobs a durable write (not deferred) found already stored at ``paths``: each copy
        may be a deferred write of any thread or process, published but not synced, so its data
        and its shard's entry are flushed, then the shards' own entries, before the caller
        commits anything that names them. Cheap for blobs that are durable already (nothing
        to write)."""
        for path in paths:
            flush_existing(path)
        if paths:
            fsync_dir(self._layout.blobs_dir)

    def ensure_durable(self, cids: Iterable[str]) -> list[str]:
        """Of ``cids``, return those absent from the store (in order, without repeats), and make
        sure each present one is durable before the caller commits anything that names it: the
        copy found may be another thread's or another process's deferred write (see
        :meth:`deferred`), published but not synced yet. Inside a :meth:`deferred` block that
        defers, the calling thread then owes a sync (one ``syncfs`` covers every writer's data,
        paid by :meth:`sync` or on leaving the block); elsewhere each present blob is flushed
        now, its data and its directory entries (the shard's and the shard directory's own),
        which costs little for a blob that is durable already.

        For a caller that needs blobs and writes only the missing ones (a download): what it
        writes itself is covered as any write. A present blob is neither read nor rehashed
        (:meth:`check` does that) nor freshened: protect it from a collector by other means (a
        lease) before calling this.
        """
        absent: list[str] = []
        present: list[str] = []
        for cid in dict.fromkeys(cids):
            path = self.fspath(cid)
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                absent.append(cid)
                continue
            if stat.S_ISREG(st.st_mode):
                present.append(path)
            else:                       # not a blob (a damaged store): fetched again like an absent one
                absent.append(cid)
        if present and self._durable_now():
            self._flush_found(present)
        return absent

    # -- writing ---------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> Blob:
        """Store ``data`` and return its identity.

        Storing bytes already present is a success that only refreshes the blob's mtime.
        """
        data = bytes(data)
        blob = Blob(cid_of_bytes(data), len(data))
        if self._present(blob):
            # The copy found may be another thread's deferred write, not durable yet: owed to
            # this thread's sync when it defers too, else flushed if need be.
            if self._durable_now():
                self._flush_found([self.fspath(blob.cid)])
            return blob
        if self._anonymous and self._put_anonymous(data, blob.cid):
            return blob
        with TempFile.create(self._tmp) as temp:
            write_all(temp.fd, data)
            self._commit(temp, blob.cid)
        return blob

    def put_many(self, items: Iterable[bytes]) -> list[Blob]:
        """:meth:`put_bytes` of each of ``items``, in order, with the same guarantee when it
        returns (every blob durable, or owed to the sync of a deferring :meth:`deferred` block)
        and fewer flushes where the store fsyncs as it writes: each blob's file is still fsynced
        before it is linked, but the directories that received new entries (the shards, then
        their parent for the shards made) are flushed once each at the end instead of after
        every blob: a batch of N new small blobs costs about N + 1 journal commits, not 3N.

        A blob found already stored is flushed by the one rule (see the module docstring)."""
        if not self._durable_now() or not self._anonymous:
            return [self.put_bytes(data) for data in items]
        dirs: dict[str, None] = {}   # directories to flush before returning, in order
        found: list[str] = []        # blobs found stored: flushed by the one rule at the end
        out = []
        for data in items:
            data = bytes(data)
            blob = Blob(cid_of_bytes(data), len(data))
            if self._present(blob):
                found.append(self.fspath(blob.cid))
            elif not (self._anonymous and self._put_anonymous(data, blob.cid, dirs, found)):
                self.put_bytes(data)   # the named path, durable on its own
            out.append(blob)
        if dirs:
            blobs_dir = str(self._layout.blobs_dir)   # new shards' entries (cheap if there are none)
            dirs.pop(blobs_dir, None)
            dirs[blobs_dir] = None
            for directory in dirs:
                fsync_dir(directory)
        self._flush_found(found)
        return out

    def _put_anonymous(self, data: bytes, cid: str, dirs: dict[str, None] | None = None,
                       found: list[str] | None = None) -> bool:
        """Write ``data`` (hashing to ``cid``) through an unnamed temp file and publish it; False
        (nothing published) where there is no such file or it cannot be linked (then never
        tried again by this store): the caller takes the named path. With ``dirs`` (a durable
        store, outside a deferring block: see :meth:`put_many`), the file is fsynced before it
        is linked and the directories to flush are added to ``dirs`` instead of being flushed
        (and a blob found published meanwhile to ``found``); False as well (nothing written) when
        the blobs directory itself is still to be made."""
        dest = self.fspath(cid)
        shard = os.path.dirname(dest)
        if dirs is not None and not os.path.isdir(os.path.dirname(shard)):
            return False
        fd = open_anonymous(self._tmp)
        if fd is None:
            self._anonymous = False
            return False
        try:
            write_all(fd, data)
            durable = self._durable_now() if dirs is None else True
            seal(fd, fsync=durable)
            kept = publish_anonymous(fd, len(data), dest, fsync=durable and dirs is None, aux_dir=self._tmp)
        finally:
            os.close(fd)
        if kept is None:
            self._anonymous = False
            return False
        if dirs is None:
            if kept and durable:
                self._flush_found([dest])
        elif kept:
            assert found is not None
            found.append(dest)      # published meanwhile: as put_many treats blobs found
        else:
            dirs[shard] = None
        return True

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
            return self._move_in(path if isinstance(path, Path) else Path(path))
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self._ingest_fd(fd)
        finally:
            os.close(fd)

    def put_stream(self, fileobj: BinaryIO) -> Blob:
        """Store what ``fileobj`` yields from its position to its end; return its identity.

        The bytes are hashed while they are copied; the stream is not closed.
        """
        with TempFile.create(self._tmp) as temp:
            hexdigest, size = stream_and_hash(fileobj, temp.fd, writeback=self._fsync)
            blob = Blob(cid_from_hex(hexdigest), size)
            self._commit(temp, blob.cid)
        return blob

    def put_chunks(self, chunks: Iterator[bytes], expect: Blob) -> Blob:
        """Store the bytes ``chunks`` yields as the blob ``expect``, for bytes from an untrusted
        source (a download): they are hashed once, while they are written to the temp file, and
        published only if they are exactly ``expect.size`` bytes hashing to ``expect.cid``.
        Otherwise :class:`~cas.errors.CorruptBlob` (:class:`~cas.errors.OversizedBlob` as soon as
        a chunk takes them past ``expect.size``: the rest is not read) and nothing of them stays:
        the temp file is removed, as it is when ``chunks`` raises. Returns ``expect``."""
        from cas.errors import OversizedBlob
        from cas.hashing import new_hasher
        from cas.writeback import Writeback

        hasher = new_hasher(threads=False)
        size = 0
        with TempFile.create(self._tmp) as temp:
            hints = Writeback(temp.fd, enabled=self._fsync)
            for chunk in chunks:
                size += len(chunk)
                if size > expect.size:
                    raise OversizedBlob(expect.cid, expect.size)
                hasher.update(chunk)
                write_all(temp.fd, chunk)
                hints.wrote(len(chunk))
            actual = cid_from_hex(hasher.hexdigest())
            if actual != expect.cid or size != expect.size:
                raise CorruptBlob(expect.cid, actual)
            self._commit(temp, expect.cid)
        return expect

    # -- reading ---------------------------------------------------------------------------

    def path(self, cid: str) -> Path:
        """Return where blob ``cid`` lives (it may not exist). The file must never be written."""
        return self._layout.blob_path(cid)

    def fspath(self, cid: str) -> str:
        """:meth:`path` as a string (cheaper where many blobs are checked, as a cache hit does)."""
        return self._layout.blob_fspath(cid)

    def exists(self, cid: str) -> bool:
        """Return True if blob ``cid`` is in the store (its content is not checked)."""
        return self.stat(cid) is not None

    def stat(self, cid: str) -> Blob | None:
        """Return blob ``cid``'s identity with its size on disk, or None if it is absent."""
        try:
            st = os.lstat(self.fspath(cid))    # a link in a blob's place is none: never followed
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Blob(cid, st.st_size) if stat.S_ISREG(st.st_mode) else None

    def open(self, cid: str) -> BinaryIO:
        """Open blob ``cid`` for reading (content not checked). Raises :class:`BlobNotFound`, or
        :class:`CorruptBlob` after quarantining what is there if it is no regular file (see
        :meth:`_open_fd`)."""
        return open(self._open_fd(cid)[0], "rb")

    def _open_fd(self, cid: str) -> tuple[int, os.stat_result]:
        """A descriptor of blob ``cid`` and its ``fstat``. Whatever else sits at its path — a
        FIFO (reading it would block forever), a device, a symbolic link (never followed), a
        directory — is damage, never a blob: it is quarantined and :class:`CorruptBlob` raised.
        Raises :class:`BlobNotFound`."""
        path = self.fspath(cid)
        try:
            fd = os.open(path, READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._not_found(cid) from exc
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            self._quarantine_odd(cid)
            raise CorruptBlob(cid, NOT_A_FILE) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._quarantine_odd(cid, st)
            raise CorruptBlob(cid, NOT_A_FILE)
        return fd, st

    def _quarantine_found(self, cid: str, inode: tuple[int, int]) -> None:
        """Quarantine the corrupt file ``inode`` found at blob ``cid``'s path, if the store lets
        it (a read-only or immutable ``blobs/`` does not): the caller reports the blob corrupt
        either way, and ``verify --repair`` removes it where it is."""
        with contextlib.suppress(OSError):
            self.quarantine(cid, inode=inode)

    def _quarantine_odd(self, cid: str, st: os.stat_result | None = None) -> None:
        """Quarantine what sits at blob ``cid``'s path (``st``: the inode found there; None: a
        link), if it can be. A directory stays where it is, for :meth:`delete` (``verify
        --repair``); the caller reports the blob corrupt either way."""
        if st is not None and stat.S_ISDIR(st.st_mode):
            return
        with contextlib.suppress(OSError):
            self.quarantine(cid, inode=None if st is None else (st.st_dev, st.st_ino))

    def open_verified(self, cid: str) -> BinaryIO:
        """Open blob ``cid`` for streaming; reading it to the end raises :class:`CorruptBlob` if
        its bytes do not match the cid (see :class:`cas.reader.VerifiedReader`), after
        quarantining the blob. Bytes read before the end are unchecked: a caller that must not
        pass on a single corrupt byte calls :meth:`check` first. Raises :class:`BlobNotFound`."""
        from cas.reader import VerifiedReader

        raw = self.open(cid)
        st = os.fstat(raw.fileno())
        reader = VerifiedReader(raw, cid, on_corrupt=lambda: self._quarantine_found(cid, (st.st_dev, st.st_ino)))
        return io.BufferedReader(reader, CHUNK_SIZE)

    def read(self, cid: str) -> bytes:
        """Return blob ``cid``'s bytes after checking them against the cid.

        Meant for small blobs such as manifests; stream large ones with :meth:`open_verified`.
        Raises :class:`BlobNotFound`, or :class:`CorruptBlob` after quarantining the blob.
        """
        with self.open(cid) as reader:
            st = os.fstat(reader.fileno())
            data = reader.read()
        actual = cid_of_bytes(data)
        if actual != cid:
            self._quarantine_found(cid, (st.st_dev, st.st_ino))
            raise CorruptBlob(cid, actual)
        return data

    def check(self, cid: str) -> Blob:
        """Rehash blob ``cid`` and return its identity if its bytes match the cid.

        Raises :class:`BlobNotFound`, or :class:`CorruptBlob` after quarantining the blob: a
        caller about to pass a blob's bytes on (print, copy, export) calls this first so that it
        never passes on a corrupt byte.
        """
        fd, st = self._open_fd(cid)
        try:
            hexdigest, size = hash_fd(fd)
        finally:
            os.close(fd)
        actual = cid_from_hex(hexdigest)
        if actual != cid:
            self._quarantine_found(cid, (st.st_dev, st.st_ino))
            raise CorruptBlob(cid, actual)
        return Blob(cid, size)

    def verify(self, cid: str) -> bool:
        """Rehash blob ``cid``: True if its bytes match the cid, False if it is corrupt.

        A corrupt blob is left in place for the caller to deal with (see :meth:`check` for the
        variant that quarantines it); so is anything that is no regular file (False: a FIFO is
        never read, a link never followed). Raises :class:`BlobNotFound`.
        """
        try:
            fd = os.open(self.fspath(cid), READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._not_found(cid) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return False
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            hexdigest, _ = hash_fd(fd)
        finally:
            os.close(fd)
        return cid_from_hex(hexdigest) == cid

    def iter_blobs(self) -> Iterator[Blob]:
        """Yield every published blob in cid order; temp files and stray names are skipped."""
        return self._layout.scan_blobs()

    def tmp_files(self) -> Iterator[Path]:
        """Yield the temp files under ``tmp/``: writes in progress or abandoned by a crash.

        Remove them only with :meth:`remove_temp`, which leaves writes in progress alone.
        """
        return self._layout.scan_temps()

    def remove_temp(self, path: Path, *, older_than_s: float, now: float | None = None,
                    dry_run: bool = False) -> int | None:
        """Remove temp file ``path`` if it is abandoned: no writer holds its lock (every write
        holds one until it ends) and it is older than ``older_than_s`` seconds. Returns its
        size, or None if it was kept. ``now`` defaults to the wall clock; ``dry_run`` only
        answers whether it would be removed."""
        return remove_if_abandoned(Path(path), older_than_s, time.time() if now is None else now,
                                   remove=not dry_run)

    # -- quarantine ------------------------------------------------------------------------

    def quarantine(self, cid: str, *, inode: tuple[int, int] | None = None) -> bool:
        """Move blob ``cid`` out of ``blobs/`` into ``quarantine/`` (one rename); True if moved.

        With ``inode`` (``(st_dev, st_ino)`` of the file found corrupt), only that file moves: a
        good copy published at the same name meanwhile stays. The quarantined file is named by
        the cid's hex digits and the time, so a blob damaged twice keeps both copies.
        """
        path = self.path(cid)
        if inode is not None:
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            if (st.st_dev, st.st_ino) != inode:
                return False
        dest = self._layout.quarantine_path(cid, time.time_ns())
        for _ in range(2):
            try:
                os.rename(path, dest)
            except FileNotFoundError:
                if not os.path.lexists(path):
                    return False
                make_dirs(dest.parent, fsync=False)
            else:
                return True
        return False

    def _not_found(self, cid: str) -> BlobNotFound:
        """:class:`BlobNotFound` for ``cid``, saying whether a corrupt copy of it is in the
        quarantine (so a reader can tell a blob found corrupt from one a collector removed)."""
        prefix = hex_of(cid) + "."
        try:
            with os.scandir(self._layout.quarantine_dir) as entries:
                quarantined = any(e.name.startswith(prefix) for e in entries)
        except OSError:
            quarantined = False
        return BlobNotFound(cid, quarantined=quarantined)

    def quarantined(self) -> Iterator[tuple[str, Path]]:
        """Yield ``(cid, file)`` for every quarantined copy, oldest name first."""
        return self._layout.scan_quarantine()

    def drop_quarantined(self, path: Path) -> bool:
        """Remove one quarantined file (as :meth:`quarantined` named it); True if it was there."""
        path = Path(path)
        if path.parent != self._layout.quarantine_dir:
            raise ValueError(f"{path} is not in this store's quarantine")
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True

    # -- maintenance -----------------------------------------------------------------------

    def delete(self, cid: str, *, identity: tuple[int, int, int] | None = None) -> bool:
        """Remove blob ``cid``; True if it was there. Links made by :meth:`link_to` survive.
        Whatever else sits at the blob's path (a directory: damage, never a blob) is removed too
        (True), so that the blob can be stored again. With ``identity`` (``(st_dev, st_ino,
        st_ctime_ns)`` of the file found corrupt: an inode number alone is reused at once), only
        that file goes: a copy published at the name meanwhile stays."""
        path = self.path(cid)
        if identity is not None:
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            if (st.st_dev, st.st_ino, st.st_ctime_ns) != identity:
                return False
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except (IsADirectoryError, PermissionError):   # EISDIR on Linux, EPERM elsewhere for a directory
            if not os.path.isdir(path) or os.path.islink(path):
                raise
            shutil.rmtree(path)
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
        publish(trash, self.path(cid), fsync=self._fsync, aux_dir=self._tmp)
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
            raise self._not_found(cid) from exc

    def link_to(self, cid: str, dest: Path, *, verify: bool = False) -> None:
        """Materialise blob ``cid`` as a new read-only file at ``dest``.

        A hard link where the filesystem allows it (``dest`` then shares the blob's inode: never
        make it writable), otherwise a copy with mode 0444. ``dest``'s directory must exist;
        an existing ``dest`` raises ``FileExistsError``. Raises :class:`BlobNotFound`.

        With ``verify``, the file at ``dest`` is then hashed: if it does not match the cid, it is
        removed, the blob is quarantined and :class:`CorruptBlob` is raised.
        """
        self._link(cid, Path(dest))
        if not verify:
            return
        fd = os.open(dest, READ_FLAGS)
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            hexdigest, _ = hash_fd(fd) if regular else ("", 0)
        finally:
            os.close(fd)
        actual = cid_from_hex(hexdigest) if regular else NOT_A_FILE
        if actual != cid:
            os.unlink(dest)
            with contextlib.suppress(BlobNotFound, CorruptBlob):
                self.check(cid)  # quarantines the blob if it is what is damaged
            raise CorruptBlob(cid, actual)

    def _link(self, cid: str, dest: Path) -> None:
        source = self.path(cid)
        try:
            os.link(source, dest)
        except FileNotFoundError as exc:
            if not self.exists(cid):
                raise self._not_found(cid) from exc
            raise
        except OSError as exc:
            if exc.errno not in _LINK_FALLBACK:
                raise
            self._copy_out(cid, Path(dest))

    # -- internals -------------------------------------------------------------------------

    def _present(self, blob: Blob) -> bool:
        """True if ``blob`` is already stored with its size (its mtime now refreshed, so a
        collector's grace period protects it) and, up to ``RECHECK_EXISTING`` bytes, its bytes.
        A copy of another size, or a small one damaged in place, is damaged: False, and the
        write that follows replaces it."""
        try:
            st = os.stat(path := self.fspath(blob.cid))
        except (FileNotFoundError, NotADirectoryError):
            return False
        if st.st_size != blob.size or (blob.size <= RECHECK_EXISTING and not intact_in_place(path)):
            return False
        return freshen(path)

    def _commit(self, temp: TempFile, cid: str) -> None:
        durable = self._durable_now()
        seal(temp.fd, fsync=durable)
        dest = self.fspath(cid)
        if publish(temp.path, dest, fsync=durable, aux_dir=self._tmp) and durable:
            self._flush_found([dest])

    def _ingest_fd(self, src: int) -> Blob:
        """Copy an open file into the store, hashing the bytes written."""
        with TempFile.create(self._tmp) as temp:
            hexdigest, size = copy_and_hash(src, temp.fd, writeback=self._fsync)
            blob = Blob(cid_from_hex(hexdigest), size)
            self._commit(temp, blob.cid)
        return blob

    def _move_in(self, path: Path) -> Blob:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return self._copy_then_unlink(path)
        # Locked before it enters tmp/ and until it is published, like every temp file, so that
        # a collector never takes it for an abandoned one (see cas.staging).
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return self._copy_then_unlink(path)
        try:
            held = os.fstat(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._copy_then_unlink(path)  # someone else holds a lock on it: copy
            if (held.st_dev, held.st_ino) != (st.st_dev, st.st_ino) or held.st_nlink != 1:
                return self._copy_then_unlink(path)
            if held.st_size <= DEDUP_FIRST_SIZE:
                found = self._consume_if_present(path, fd, held)
                if found is not None:
                    return found
            temp = temp_name(self._tmp)
            try:
                try:
                    os.rename(path, temp)
                except FileNotFoundError:  # tmp/ not created yet (or removed): once, not per file
                    make_dirs(self._tmp, fsync=False)
                    os.rename(path, temp)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                return self._copy_then_unlink(path)
            # A moved-in file keeps its writer's mtime, possibly old (cp -p, tar): refresh it so
            # the gc grace period protects the new blob as it protects any fresh write.
            os.utime(temp)
            try:
                blob = self._adopt(temp, fd)
            except BaseException:
                _put_back(temp, path, stat.S_IMODE(st.st_mode))
                raise
            # Already gone if it was published by rename (a filesystem without hard links).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            return blob
        finally:
            os.close(fd)

    def _consume_if_present(self, path: Path, fd: int, held: os.stat_result) -> Blob | None:
        """For a small file to move in (open as ``fd``, ``held`` its stat): if its bytes are
        already stored, remove it and return the blob; else None (nothing changed). Hashing it
        where it is first spares the rename into ``tmp/``, the seal and the link attempt that
        a duplicate (a log or an output seen before) would otherwise cost."""
        hexdigest, size = hash_fd(fd)
        os.lseek(fd, 0, os.SEEK_SET)  # the general path may copy from fd's offset
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (held.st_size, held.st_mtime_ns):
            return None  # written meanwhile: the general path copes with that
        blob = Blob(cid_from_hex(hexdigest), size)
        if not self._present(blob):
            return None
        if self._durable_now():
            self._flush_found([self.fspath(blob.cid)])
        os.unlink(path)
        return blob

    def _adopt(self, temp: Path, fd: int) -> Blob:
        """Publish the file renamed to ``temp`` (open as ``fd``) in place, or copy it if that is
        not safe."""
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
        durable = self._durable_now()
        if durable:
            os.fsync(fd)
        blob = Blob(cid_from_hex(hexdigest), size)
        dest = self.fspath(blob.cid)
        if publish(temp, dest, fsync=durable, aux_dir=self._tmp) and durable:
            self._flush_found([dest])
        return blob

    def _copy_then_unlink(self, path: Path) -> Blob:
        blob = self.put_file(path, move=False)
        os.unlink(path)
        return blob

    def _copy_out(self, cid: str, dest: Path) -> None:
        try:
            src = os.open(self.path(cid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise self._not_found(cid) from exc
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
