"""Hit records of a batch, committed in groups.

A single run records its execution at once (one LMDB transaction, one sync). In a batch, hits
go through a :class:`GroupRecorder` instead: one transaction and one sync per group of at most
``size`` records or ``age_s`` seconds, whichever comes first, and whatever is left when the batch
ends. A crash therefore loses at most the records of the group not yet committed — hits, whose
results stay in the cache (the next run answers them again); never a cache entry, a charge or a
miss's record, which are committed at once as for a single run.
"""

from __future__ import annotations

import threading
import time

from theoryx.store import executions
from theoryx.store.db import Database
from theoryx.store.executions import Recording

GROUP_SIZE = 512
GROUP_AGE_S = 0.25


class GroupRecorder:
    """Buffers :class:`Recording` values and commits them in groups; thread-safe."""

    def __init__(self, db: Database, size: int = GROUP_SIZE, age_s: float = GROUP_AGE_S) -> None:
        self.db, self.size, self.age_s = db, size, age_s
        self._buffer: list[Recording] = []
        self._first = 0.0
        self._lock = threading.Lock()
        self.groups = 0

    def add(self, recording: Recording) -> None:
        with self._lock:
            if not self._buffer:
                self._first = time.monotonic()
            self._buffer.append(recording)
            if len(self._buffer) >= self.size or time.monotonic() - self._first >= self.age_s:
                self._flush_locked()

    def flush_if_due(self) -> None:
        """Commit the pending group if it is older than ``age_s`` (the batch calls this while it
        waits, so a slow batch does not hold records back)."""
        with self._lock:
            if self._buffer and time.monotonic() - self._first >= self.age_s:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._buffer:
            pending, self._buffer = self._buffer, []
            executions.record_many(self.db, pending)
            self.groups += 1
