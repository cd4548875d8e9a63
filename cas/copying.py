"""Copy bytes into a store temp file while hashing exactly the bytes that were written.

Two engines, chosen per source:

* regular files of :data:`PIPELINE_MIN_SIZE` or more: the kernel copies chunks with
  ``copy_file_range`` in a worker thread while the calling thread hashes the previous chunk of
  the *destination* through a memory map (BLAKE3, multithreaded where cores are to spare).
  Copy and hash overlap, no byte passes through Python, and the digest describes what is on
  disk in the temp file even if the source changes meanwhile;
* everything else (small files, pipes, sockets, filesystems without ``copy_file_range``): a
  read / hash / write loop with a :data:`~cas.hashing.CHUNK_SIZE` buffer.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat

import blake3

from cas.hashing import CHUNK_SIZE, new_hasher
from cas.writeback import Writeback

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import BinaryIO

PIPELINE_MIN_SIZE = 8 << 20
"""Regular files at least this large take the copy_file_range pipeline."""

PIPELINE_CHUNK = 16 << 20
"""Bytes copied per copy_file_range call; one chunk is hashed while the next is copied."""

PIPELINE_HASH_THREADS_MIN_CPUS = 4
"""Below this many usable CPUs the pipeline hashes on one thread: the copy needs a core too, and
on 2 CPUs a multithreaded hash fighting the copy measured slower (1 GiB: ~0.65 s vs ~0.4 s)."""

_UNSUPPORTED = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


def copy_and_hash(src: int, dst: int, *, writeback: bool) -> tuple[str, int]:
    """Copy ``src`` from its current offset to its end into ``dst``; hash what was written.

    ``dst`` must be a new, empty file opened read-write. Returns ``(hexdigest, size)`` of the
    bytes now in ``dst``. ``writeback`` starts disk writes early for a caller that will fsync.
    """
    st = os.fstat(src)
    if stat.S_ISREG(st.st_mode) and st.st_size >= PIPELINE_MIN_SIZE:
        result = _pipelined(src, dst, writeback=writeback)
        if result is not None:
            return result
    with open(src, "rb", buffering=0, closefd=False) as reader:
        return stream_and_hash(reader, dst, writeback=writeback)


def stream_and_hash(reader: BinaryIO, dst: int, *, writeback: bool) -> tuple[str, int]:
    """Read ``reader`` to its end, hashing each chunk and appending it to ``dst``."""
    hasher = new_hasher(threads=False)
    hints = Writeback(dst, enabled=writeback)
    size = 0
    while chunk := reader.read(CHUNK_SIZE):
        hasher.update(chunk)
        write_all(dst, chunk)
        hints.wrote(len(chunk))
        size += len(chunk)
    return hasher.hexdigest(), size


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, retrying short writes."""
    with memoryview(data) as view:
        offset = 0
        while offset < len(view):
            offset += os.write(fd, view[offset:])


def _pipelined(src: int, dst: int, *, writeback: bool) -> tuple[str, int] | None:
    """Run the copy_file_range pipeline; None if the kernel cannot copy this pair of files."""
    if not hasattr(os, "copy_file_range"):
        return None
    try:
        copied = os.copy_file_range(src, dst, PIPELINE_CHUNK)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return None
        raise
    if copied == 0:
        return None  # a size but no bytes (procfs and the like): read it instead
    hints = Writeback(dst, enabled=writeback)
    hints.wrote(copied)
    hasher = new_hasher(threads=_usable_cpus() >= PIPELINE_HASH_THREADS_MIN_CPUS)
    hashed = 0
    # Leaving the with-block waits for the worker, so it never touches a closed descriptor.
    from concurrent.futures import ThreadPoolExecutor  # only for large copies; keeps imports cheap

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cas-copy") as worker:
        while True:
            next_chunk = worker.submit(_copy_chunk, src, dst, hints)
            _hash_region(hasher, dst, hashed, copied)
            hashed = copied
            count = next_chunk.result()
            if count == 0:
                return hasher.hexdigest(), copied
            copied += count


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _copy_chunk(src: int, dst: int, hints: Writeback) -> int:
    count = os.copy_file_range(src, dst, PIPELINE_CHUNK)
    hints.wrote(count)
    return count


def _hash_region(hasher: blake3.blake3, fd: int, start: int, end: int) -> None:
    """Hash bytes ``[start, end)`` of ``fd`` through a map (offsets must be page-aligned)."""
    base = start - start % mmap.ALLOCATIONGRANULARITY
    try:
        mapped = mmap.mmap(fd, end - base, access=mmap.ACCESS_READ, offset=base)
    except OSError:  # a filesystem that cannot map files (some FUSE ones): read instead
        for offset in range(start, end, CHUNK_SIZE):
            hasher.update(os.pread(fd, min(CHUNK_SIZE, end - offset), offset))
        return
    with mapped, memoryview(mapped) as view, view[start - base :] as region:
        hasher.update(region)


def copy_fd(src: int, dst: int) -> None:
    """Copy ``src`` from its current offset to its end into ``dst``, without hashing."""
    if hasattr(os, "copy_file_range"):
        try:
            while os.copy_file_range(src, dst, PIPELINE_CHUNK):
                pass
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED or os.lseek(dst, 0, os.SEEK_CUR) != 0:
                raise
        else:
            return
    while chunk := os.read(src, CHUNK_SIZE):
        write_all(dst, chunk)
