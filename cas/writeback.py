"""Early writeback: ask the kernel to start writing a file's dirty pages while it is still growing.

Without it, a large file sits in the page cache until the final ``fsync``, which then waits for
the whole file to reach the disk. Starting writeback every few dozen MiB overlaps the disk with
the copy (measured: 1 GiB stored with fsync in ~0.4-0.5 s instead of ~0.7-0.9 s). This is only
a hint: where ``sync_file_range`` is missing (not Linux) it does nothing, and its failures are
ignored, because the ``fsync`` that follows is what guarantees durability.
"""

from __future__ import annotations

from collections.abc import Callable

from cas import libc

WRITEBACK_EVERY = 16 << 20
"""Bytes written between two writeback requests."""

_SYNC_FILE_RANGE_WRITE = 2


def _hint_function() -> Callable[[int, int, int, int], int] | None:
    return libc.function("sync_file_range", ("c_int", "c_int64", "c_int64", "c_uint"),  # type: ignore[no-any-return]
                         "c_int")


class Writeback:
    """Tracks how much of ``fd`` was written and starts writeback every :data:`WRITEBACK_EVERY`.

    Not thread-safe: one writer calls :meth:`wrote`.
    """

    def __init__(self, fd: int, *, enabled: bool) -> None:
        self._fd = fd
        self._hint = _hint_function() if enabled else None
        self._start = 0
        self._end = 0

    def wrote(self, count: int) -> None:
        """Record that ``count`` more bytes were appended to the file."""
        self._end += count
        if self._hint is not None and self._end - self._start >= WRITEBACK_EVERY:
            self._hint(self._fd, self._start, self._end - self._start, _SYNC_FILE_RANGE_WRITE)
            self._start = self._end
