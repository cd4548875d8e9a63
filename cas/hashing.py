"""BLAKE3 hashing of bytes, open files and paths, without a store.

Large regular files are hashed through a memory map with BLAKE3's multithreaded mode, which
measured as fast as ``b3sum`` (itself mmap + threads); small ones are read in chunks, where
mapping and threads cost more than they save. The map is made from the already-open descriptor,
so the bytes hashed and the size reported belong to the same inode. Like ``b3sum``, mapping a
file that another process truncates meanwhile kills the process with SIGBUS: hash files that
nobody else is writing.
"""

from __future__ import annotations

import mmap
import os
import stat
from pathlib import Path

import blake3

from cas.blob import Blob
from cas.cid import cid_from_hex

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import BinaryIO

CHUNK_SIZE = 1 << 20
"""Buffer size for streaming reads and writes."""

MMAP_MIN_SIZE = 1 << 20
"""Regular files at least this large are hashed through mmap with several threads."""

THREADED_MIN_SIZE = 128 << 10
"""In-memory buffers at least this large are hashed with several threads."""


def new_hasher(*, threads: bool) -> blake3.blake3:
    """Return a fresh BLAKE3 hasher, using as many threads as there are cores if ``threads``."""
    return blake3.blake3(max_threads=blake3.blake3.AUTO if threads else 1)


def cid_of_bytes(data: bytes) -> str:
    """Return the cid of ``data`` (the name :meth:`Store.put_bytes` would give it)."""
    hasher = new_hasher(threads=len(data) >= THREADED_MIN_SIZE)
    hasher.update(data)
    return cid_from_hex(hasher.hexdigest())


def hash_file(path: Path) -> Blob:
    """Return the identity of the file at ``path`` (symlinks followed) without storing it.

    Non-regular files such as pipes are read to their end. Raises ``OSError`` if the file
    cannot be opened or read (``IsADirectoryError`` for a directory).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        hexdigest, size = hash_fd(fd)
    finally:
        os.close(fd)
    return Blob(cid_from_hex(hexdigest), size)


def hash_fd(fd: int) -> tuple[str, int]:
    """Hash an open file from offset 0 (regular) or its current position (otherwise).

    Returns ``(hexdigest, size)``. A regular file is hashed up to the size ``fstat`` reports on
    entry; bytes appended meanwhile are ignored, so digest and size always agree.
    """
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"cannot hash a directory (fd {fd})")
    if stat.S_ISREG(st.st_mode) and st.st_size >= MMAP_MIN_SIZE:
        try:
            mapped = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
        except OSError:
            pass  # a filesystem that cannot map files (some FUSE ones): read it below
        else:
            hasher = new_hasher(threads=True)
            with mapped:
                hasher.update(mapped)
            return hasher.hexdigest(), st.st_size
    if stat.S_ISREG(st.st_mode):
        os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", buffering=0, closefd=False) as reader:
        return hash_stream(reader)


def hash_stream(reader: BinaryIO) -> tuple[str, int]:
    """Hash ``reader`` from its current position to its end; return ``(hexdigest, size)``."""
    hasher = new_hasher(threads=False)
    size = 0
    while chunk := reader.read(CHUNK_SIZE):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size
