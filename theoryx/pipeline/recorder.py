"""A batch's execution records, committed in groups.

A single run records its execution at once (one LMDB transaction, one sync). In a batch, records
go through a :class:`GroupRecorder` instead, in two ways:

- hits (:meth:`GroupRecorder.add`): one transaction and one sync per group of at most ``size``
  records or ``age_s`` seconds (a timer commits a group that old even while nothing else
  happens), whichever comes first, and whatever is left when the batch ends.
  A crash therefore loses at most the records of the group not yet committed — hits, whose
  results stay in the cache (the next run answers them again);
- misses and remote hits (:meth:`GroupRecorder.commit`): durable before the call returns, as for a
  single run, but the records (with their cache entries) of items finishing at the same time
  share one transaction and one sync (group commit: while one commit runs, the records that
  arrive wait for the next, which takes them all). A cache entry, a charge or a miss's record is
  never lost to a crash once its item was reported.
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
        # group commit (commit): tickets handed out, committed so far, and the failures to report
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[Recording] = []
        self._issued = 0
        self._committed = 0
        self._committing = False
        self._failed: dict[int, BaseException] = {}
        self.commits = 0            # transactions of commit() (tests, measurements)

    def add(self, recording: Recording) -> None:
        with self._lock:
            if not self._buffer:
                self._first = time.monotonic()
                self._arm()
            self._buffer.append(recording)
            if len(self._buffer) >= self.size or time.monotonic() - self._first >= self.age_s:
                self._flush_locked()

    def _arm(self) -> None:
        """Commit this group once it is ``age_s`` old even if nothing else happens by then (the
        caller of ``Session.map`` may pause between results: the records of the results it
        already holds must not wait for it)."""
        timer = threading.Timer(self.age_s, self._due)
        timer.daemon = True
        timer.start()

    def _due(self) -> None:
        try:
            self.flush_if_due()
        except Exception:   # the group is kept: the next add, or the batch's end, commits it
            pass

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
            executions.record_many(self.db, self._buffer)    # all or nothing: kept on a failure
            self._buffer = []
            self.groups += 1

    def commit(self, recording: Recording) -> None:
        """Commit ``recording`` durably before returning, in one transaction with the other
        recordings committed concurrently; raises what that transaction raised."""
        with self._cond:
            self._queue.append(recording)
            self._issued += 1
            ticket = self._issued
            while self._committed < ticket:
                if self._committing:
                    self._cond.wait()
                    continue
                self._committing = True
                group, self._queue = self._queue, []
                last = self._issued
                self._cond.release()
                error: BaseException | None = None
                try:
                    executions.record_many(self.db, group)
                except BaseException as exc:     # every recording of the group failed with it
                    error = exc
                finally:
                    self._cond.acquire()
                    self._committing = False
                    if error is not None:
                        self._failed.update((n, error) for n in range(last - len(group) + 1, last + 1))
                    self._committed = last
                    self.commits += 1
                    self._cond.notify_all()
            failed = self._failed.pop(ticket, None)
        if failed is not None:
            raise failed
