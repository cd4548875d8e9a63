"""Where things live under a store root (the ``cas-v1`` directory).

    <root>/blobs/<2 hex>/<62 hex>    published blobs, mode 0444
    <root>/tmp/<random>.tmp          temp files of writes in progress
    <root>/trash/<2 hex>/<62 hex>    blobs a collector has withdrawn and not yet purged
    <root>/quarantine/<64 hex>.<ns>  blobs found corrupt when read, moved out of sight

Paths of blobs are built only from validated cids; scanning ignores every name that a valid cid
could not have produced. Scanning never follows a symbolic link: one in place of ``blobs/``,
``tmp/``, ``trash/`` or ``quarantine/`` raises ``OSError`` (``ELOOP``) naming it, since what is
listed from them may be removed (a collector's temp sweep, a repair emptying the quarantine) and a
link would point that at files outside the store; one in place of a shard is passed over.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cas.blob import Blob
from cas.cid import PREFIX, hex_of

_SHARD = r"[0-9a-f]{2}"
_REST = r"[0-9a-f]{62}"
_QUARANTINED = r"([0-9a-f]{64})\.[0-9]+"
# Patterns are compiled on first use: only scans need them, a cache hit never does.
_MATCHERS: dict[str, Callable[[str], re.Match[str] | None]] = {}


def _fullmatch(pattern: str, text: str) -> re.Match[str] | None:
    """``re.fullmatch`` through a matcher compiled once (``re``'s own cache lookup costs about as
    much as the match: a million-blob scan calls this a million times)."""
    match = _MATCHERS.get(pattern)
    if match is None:
        match = _MATCHERS[pattern] = re.compile(pattern).fullmatch
    return match(text)


@dataclass(frozen=True, slots=True)
class Layout:
    """The directory layout of one store root."""

    root: Path

    @property
    def blobs_dir(self) -> Path:
        """Directory holding the published blobs, sharded by the first two hex digits."""
        return self.root / "blobs"

    @property
    def tmp_dir(self) -> Path:
        """Directory holding temp files; on the same filesystem as :attr:`blobs_dir`."""
        return self.root / "tmp"

    @property
    def trash_dir(self) -> Path:
        """Directory holding withdrawn blobs (see :meth:`cas.Store.withdraw`); same filesystem."""
        return self.root / "trash"

    @property
    def quarantine_dir(self) -> Path:
        """Directory holding blobs found corrupt (see :meth:`cas.Store.quarantine`); same filesystem."""
        return self.root / "quarantine"

    def quarantine_path(self, cid: str, stamp: int) -> Path:
        """Where blob ``cid`` goes when it is quarantined at ``stamp`` (nanoseconds)."""
        return self.quarantine_dir / f"{hex_of(cid)}.{stamp}"

    def scan_quarantine(self) -> Iterator[tuple[str, Path]]:
        """Yield ``(cid, path)`` of every quarantined file, in name order."""
        for entry in _sorted_entries(self.quarantine_dir):
            found = _fullmatch(_QUARANTINED, entry.name)
            if found and not entry.is_dir(follow_symlinks=False):   # a FIFO or link quarantined too
                yield PREFIX + found.group(1), Path(entry.path)

    def trash_path(self, cid: str) -> Path:
        """Return where the withdrawn blob ``cid`` lives; raise :class:`~cas.errors.InvalidCid` if malformed."""
        digest = hex_of(cid)
        return self.trash_dir / digest[:2] / digest[2:]

    def blob_path(self, cid: str) -> Path:
        """Return where the blob ``cid`` lives; raise :class:`~cas.errors.InvalidCid` if malformed."""
        return Path(self.blob_fspath(cid))

    def blob_fspath(self, cid: str) -> str:
        """:meth:`blob_path` as a string (one format, no path parsing: a hit checks several)."""
        digest = hex_of(cid)
        return f"{self.root}/blobs/{digest[:2]}/{digest[2:]}"

    def scan_blobs(self) -> Iterator[Blob]:
        """Yield every published blob, in cid order; entries removed meanwhile are skipped."""
        for shard in _sorted_entries(self.blobs_dir):
            if _fullmatch(_SHARD, shard.name) and shard.is_dir(follow_symlinks=False):
                for entry in _sorted_entries(Path(shard.path)):
                    if _fullmatch(_REST, entry.name):
                        blob = _blob_of(PREFIX + shard.name + entry.name, entry)
                        if blob is not None:
                            yield blob

    def scan_blob_stats(self) -> Iterator[tuple[str, os.stat_result]]:
        """Like :meth:`scan_blobs`, yielding ``(cid, lstat)``: the whole stat (mtime, for a
        collector) and no :class:`Blob` (names that passed the scan's pattern are valid cids,
        and a million blobs make checking them twice show)."""
        for shard in _sorted_entries(self.blobs_dir):
            if _fullmatch(_SHARD, shard.name) and shard.is_dir(follow_symlinks=False):
                prefix = PREFIX + shard.name
                for entry in _sorted_entries(Path(shard.path)):
                    if _fullmatch(_REST, entry.name):
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        if stat.S_ISREG(st.st_mode):
                            yield prefix + entry.name, st

    def shards(self) -> list[str]:
        """The shard directories' names (two hex digits), sorted."""
        return [e.name for e in _sorted_entries(self.blobs_dir)
                if _fullmatch(_SHARD, e.name) and e.is_dir(follow_symlinks=False)]

    def scan_shard(self, shard: str) -> Iterator[tuple[str, Path]]:
        """Yield ``(cid, path)`` for every blob name in one shard, unsorted and without a stat."""
        if _fullmatch(_SHARD, shard) is None:
            return
        try:
            with os.scandir(self.blobs_dir / shard) as entries:
                for entry in entries:
                    if _fullmatch(_REST, entry.name):
                        yield PREFIX + shard + entry.name, Path(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            return

    def scan_trash(self) -> Iterator[str]:
        """Yield the cids of the withdrawn blobs under :attr:`trash_dir`, in cid order."""
        for shard in _sorted_entries(self.trash_dir):
            if _fullmatch(_SHARD, shard.name) and shard.is_dir(follow_symlinks=False):
                for entry in _sorted_entries(Path(shard.path)):
                    if _fullmatch(_REST, entry.name) and entry.is_file(follow_symlinks=False):
                        yield PREFIX + shard.name + entry.name

    def scan_temps(self) -> Iterator[Path]:
        """Yield the regular files under :attr:`tmp_dir`."""
        for entry in _sorted_entries(self.tmp_dir):
            if entry.is_file(follow_symlinks=False):
                yield Path(entry.path)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Entry:
    """What a scan needs of one directory entry: its name, its path, its type (read while the
    directory was open: from the listing, no system call where the filesystem reports types)
    and its ``lstat``."""

    __slots__ = ("_dir", "_directory", "_file", "name")

    def __init__(self, directory: str, entry: os.DirEntry[str]) -> None:
        self._directory, self.name = directory, entry.name
        self._file, self._dir = entry.is_file(follow_symlinks=False), entry.is_dir(follow_symlinks=False)

    @property
    def path(self) -> str:
        return f"{self._directory}/{self.name}"

    def is_file(self, *, follow_symlinks: bool = False) -> bool:
        return self._file

    def is_dir(self, *, follow_symlinks: bool = False) -> bool:
        return self._dir

    def stat(self, *, follow_symlinks: bool = False) -> os.stat_result:
        return os.lstat(self.path)   # by path: the directory's descriptor is closed by now


def _sorted_entries(directory: Path) -> list[_Entry]:
    """The entries of ``directory``, by name; none if it is absent or no directory. A symbolic
    link in its place is never followed: ``OSError`` (``ELOOP``) naming it."""
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except FileNotFoundError:
        return []
    except OSError as exc:     # a link: ENOTDIR (O_DIRECTORY is checked first), or ELOOP
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        if os.path.islink(directory):
            raise OSError(errno.ELOOP, "a symbolic link where a directory of the store belongs (never followed)",
                          os.fspath(directory)) from None
        return []
    where = os.fspath(directory)
    try:
        with os.scandir(fd) as entries:
            return sorted((_Entry(where, e) for e in entries), key=lambda entry: entry.name)
    finally:
        os.close(fd)


def _blob_of(cid: str, entry: _Entry) -> Blob | None:
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    return Blob(cid, st.st_size) if stat.S_ISREG(st.st_mode) else None
