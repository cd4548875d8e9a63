"""Reading a small file that must be a regular file, without ever blocking on what is there.

Configuration and key files are read on a run's path (every local miss reads ``remote.json``,
a remote hit its trusted keys): a FIFO or a device in their place must be refused, not waited
on, and a huge file must not be read whole.
"""

from __future__ import annotations

import os
import stat


class NotSmallRegularFile(ValueError):
    """The path names something other than a regular file, or one larger than allowed."""


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (a link to one is followed), at most ``limit``
    of them. Opened without blocking: a FIFO or a device is :class:`NotSmallRegularFile`, as is
    a file over ``limit`` bytes (measured before reading, and again while reading, in case it
    grows). An error opening or reading it is raised as the :class:`OSError` it is
    (``FileNotFoundError`` for none)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotSmallRegularFile(f"{os.fspath(path)} is not a regular file")
        if st.st_size > limit:
            raise NotSmallRegularFile(f"{os.fspath(path)} is {st.st_size} bytes, more than the {limit} it may have")
        chunks, total = [], 0
        while total <= limit and (chunk := os.read(fd, 1 << 16)):
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:    # it grew since fstat
            raise NotSmallRegularFile(f"{os.fspath(path)} is more than the {limit} bytes it may have")
    finally:
        os.close(fd)
    return b"".join(chunks)
