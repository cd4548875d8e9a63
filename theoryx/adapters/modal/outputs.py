"""The processor's output tree, back from the Sandbox: a tar stream recreated in the workspace.

The Sandbox streams ``tar -cf - .`` of the write prefix (links are archived as links, never
followed) and :func:`extract` recreates it in ``workspace.outputs`` as the processor left it,
chunk by chunk (no file is ever held in memory): regular files with their bytes and permission
and set-id bits, directories, symbolic links as links, hard links as extra links (archived
targets are linked to; others become a file with a second link in ``links_dir``), FIFOs as FIFOs
and devices as FIFOs (never as devices on the host). Ingestion
(:mod:`theoryx.pipeline.ingest`) then judges that tree exactly as it judges a ``local`` run's,
and rejects what it rejects. What tar itself cannot archive (sockets: GNU tar skips them with a
warning) never reaches the host; that is the one difference, and a socket is rejected anyway.

Caps: once the files exceed ``limits.max_files`` or their bytes ``limits.max_bytes``, the entry
that crossed the cap is created (a regular file as a sparse file of its size, without its bytes)
and extraction stops, so ingestion rejects the tree with the same message as under ``local``
while the rest of the stream is never transferred. A directory deeper than ``limits.max_depth``
stops it the same way.

Malformed archives (absolute names, ``..``, an entry under a non-directory) are
:class:`ModalSandboxError`; the write prefix itself replaced by something else than a directory
is :class:`OutputRejected`.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from theoryx.errors import ModalSandboxError, OutputRejected
from theoryx.spec.model import OutputLimits

CHUNK = 1 << 20


TAIL = 64 << 10       # the most a sound archive holds after its end marker (GNU tar pads to 10 KiB)
END_MARKER = 2 * tarfile.BLOCKSIZE


@dataclass(frozen=True)
class Extracted:
    """What :func:`extract` recreated: entries other than directories, their regular bytes,
    whether it stopped at a cap (the rest of the stream was left unread), and whether the
    archive's end marker (two zero blocks) arrived: a stream cut short at a member boundary
    reads as a smaller archive, so only ``complete`` tells a whole tree from a lost tail."""

    files: int
    bytes: int
    stopped: bool
    complete: bool = True


def reader(chunks: Iterable[bytes]) -> BinaryIO:
    """A buffered binary stream reading the byte ``chunks`` (an exec'd process's stdout)."""
    return io.BufferedReader(ChunkReader(chunks), CHUNK)


class ChunkReader(io.RawIOBase):
    """A raw binary stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:   # type: ignore[override]
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Tail(io.RawIOBase):
    """A raw stream over ``inner`` that counts the bytes read and keeps the last :data:`TAIL`."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner
        self.total = 0
        self.tail = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:   # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.total += n
        self.tail += data
        if len(self.tail) > 2 * TAIL:
            del self.tail[:-TAIL]
        return n

    def ended_at(self, offset: int) -> bool:
        """Whether the stream, read to its end from here, holds an end marker at ``offset`` and
        nothing but zeros after it (reads at most :data:`TAIL` more bytes)."""
        while self.total - offset <= TAIL:
            if not self.read(CHUNK):
                break
        trailing = self.total - offset
        if not END_MARKER <= trailing <= min(TAIL, len(self.tail)):
            return False
        return not any(self.tail[len(self.tail) - trailing:])


def _clean(name: str) -> str:
    """An archive name relative to the archived root (``./a/b`` -> ``a/b``; the root is "")."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or any(p == ".." for p in parts):
        raise ModalSandboxError(f"malformed output archive from the Sandbox: entry {name!r}")
    return "/".join(parts)


def _entry_path(top: Path, rel: str) -> Path:
    """``top/rel``, its parents made; :class:`ModalSandboxError` when a parent is a link or a file
    (tar archives a directory before what it holds, so that never happens in a sound stream)."""
    current = top
    parts = rel.split("/")
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise ModalSandboxError(f"malformed output archive from the Sandbox: {rel!r} passes through a "
                                    "non-directory")
        current.mkdir(mode=0o755, exist_ok=True)
    return current / parts[-1]


def _write_file(path: Path, src: IO[bytes] | None, size: int, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if src is None:
            os.ftruncate(fd, size)              # sparse: only its size matters (it is rejected)
        else:
            while chunk := src.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        # permission and set-id bits as the processor left them (ingestion rejects set-id
        # files), readable and writable by theoryx whatever the processor chose
        os.fchmod(fd, (mode & 0o7777) | 0o600)
    finally:
        os.close(fd)


def extract(stream: BinaryIO, dest: Path, limits: OutputLimits, links_dir: Path) -> Extracted:
    """Recreate the tar ``stream`` (of the write prefix) under ``dest`` (see the module
    docstring); ``links_dir`` receives the second links of hard-linked files whose target was
    not archived."""
    try:
        return _extract(stream, dest, limits, links_dir)
    except tarfile.ReadError as exc:
        if "empty file" in str(exc):     # nothing archived: the script exited first (its status says why)
            return Extracted(0, 0, False, complete=False)
        raise ModalSandboxError(f"malformed output archive from the Sandbox: {exc}") from exc
    except tarfile.TarError as exc:
        raise ModalSandboxError(f"malformed output archive from the Sandbox: {exc}") from exc


def _extract(stream: BinaryIO, dest: Path, limits: OutputLimits, links_dir: Path) -> Extracted:
    files = total = 0
    extracted: dict[str, Path] = {}
    counted = _Tail(stream)
    with tarfile.open(fileobj=counted, mode="r|") as archive:
        for member in archive:
            rel = _clean(member.name)
            if not rel:
                if not member.isdir():
                    raise OutputRejected("output rejected: the processor replaced its write prefix by "
                                         "something else than a directory")
                continue
            path = _entry_path(dest, rel)
            if member.isdir():
                if path.is_symlink() or (path.exists() and not path.is_dir()):
                    raise ModalSandboxError(f"malformed output archive from the Sandbox: {rel!r} twice")
                path.mkdir(mode=0o755, exist_ok=True)
                if rel.count("/") + 1 >= limits.max_depth:
                    return Extracted(files, total, True)
                continue
            if os.path.lexists(path):
                raise ModalSandboxError(f"malformed output archive from the Sandbox: {rel!r} twice")
            files += 1
            if member.isreg():
                total += member.size
                over = files > limits.max_files or total > limits.max_bytes
                _write_file(path, None if over else archive.extractfile(member), member.size, member.mode)
                extracted[rel] = path
                if over:
                    return Extracted(files, total, True)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                target = extracted.get(_clean(member.linkname))
                if target is not None and stat.S_ISREG(target.lstat().st_mode):
                    os.link(target, path)
                else:             # a link to a file outside the archive: still a hard link here
                    _write_file(path, None, 0, member.mode)
                    links_dir.mkdir(exist_ok=True)
                    os.link(path, links_dir / str(len(os.listdir(links_dir))))
            else:                 # FIFOs, and devices (never recreated as devices on the host)
                os.mkfifo(path, 0o600)
            if files > limits.max_files:
                return Extracted(files, total, True)
        end = archive.offset
    return Extracted(files, total, False, complete=counted.ended_at(end))


__all__ = ["ChunkReader", "Extracted", "extract", "reader"]
