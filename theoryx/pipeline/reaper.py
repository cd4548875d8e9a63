"""Workspaces of a batch's finished misses, removed on a background thread.

Removing a run's workspace costs a few directory and file removals, ~2 ms on a filesystem that
discards freed blocks at once: on the critical path of every miss, that is a tenth of a mock
miss. In a batch, a miss hands its workspace to the batch's :class:`Reaper` instead, which
removes it on its own thread (the removals are system calls: they run while other threads hold
the GIL). A bounded queue keeps at most ``bound`` workspaces waiting, so a fast batch waits for
the disk instead of filling it. Nothing is lost by a crash: the workspaces sit under the batch's
``work-v1/<lease owner>/`` directory, which gc collects once the lease is no longer held.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from theoryx.store.leftovers import remove_tree

BOUND = 64


class Reaper:
    """Removes handed-over workspaces in order on one daemon thread, started on first use.
    :meth:`close` waits until every workspace handed over is gone."""

    def __init__(self, bound: int = BOUND) -> None:
        self._queue: queue.Queue[Path | None] = queue.Queue(maxsize=bound)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failures = 0       # workspaces that could not be removed (gc collects them later)

    def discard(self, path: Path) -> None:
        """Remove ``path`` soon (blocks while ``bound`` removals are already waiting)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="theoryx-reaper", daemon=True)
                self._thread.start()
        self._queue.put(path)

    def close(self) -> None:
        """Wait for every workspace handed over so far to be removed; stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _loop(self) -> None:
        while True:
            path = self._queue.get()
            if path is None:
                return
            try:
                remove_tree(path)
            except OSError:
                self.failures += 1      # left for gc's leftovers collection; the batch goes on
