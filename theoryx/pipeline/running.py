"""The state one run carries from step to step: its id, lease, record so far and plan side."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cas import BlobNotFound
from theoryx.budget.charging import Charging
from theoryx.core import notices
from theoryx.core.ids import new_execution_id
from theoryx.errors import StoreError
from theoryx.pipeline.request import RunRequest
from theoryx.store.executions import ExecutionRecord
from theoryx.store.handle import Stores
from theoryx.store.leases import Lease

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)

if TYPE_CHECKING:
    from typing import TypeVar
    T = TypeVar("T")
    from theoryx.pipeline.recorder import GroupRecorder


def now_ms() -> int:
    return int(time.time() * 1000)


class RunState:
    """Mutable by design (it is the run in progress, not a value, so a plain class rather than a
    frozen dataclass): each step replaces ``record`` with a new frozen :class:`ExecutionRecord`
    naming what it learnt. ``record_paths`` is False for replays, which must not move what a world
    path resolves to. ``warn`` reports the warnings a batch coalesces (the team cache's: a
    batch's :class:`~theoryx.core.notices.Coalesced`; a single run's go out as they come)."""

    __slots__ = ("charging", "execution_id", "lease", "record", "record_paths", "recorder", "request",
                 "shared_lease", "stores", "t0", "warn")

    def __init__(self, stores: Stores, request: RunRequest, lease: Lease, execution_id: str, record: ExecutionRecord,
                 charging: Charging, record_paths: bool = True, *, shared_lease: bool = False,
                 recorder: GroupRecorder | None = None, warn: notices.Warn = notices.each) -> None:
        self.stores = stores
        self.request = request
        self.lease = lease
        self.execution_id = execution_id
        self.record = record
        self.charging = charging
        self.record_paths = record_paths
        self.t0 = time.monotonic()
        self.shared_lease = shared_lease
        self.recorder = recorder
        self.warn = warn

    @classmethod
    def start(cls, stores: Stores, req: RunRequest, *, record_paths: bool = True, lease: Lease | None = None,
              recorder: GroupRecorder | None = None, warn: notices.Warn = notices.each) -> RunState:
        """A new execution id, its lease (held until :meth:`close`; or ``lease``, shared by a
        batch and held by it) and an empty error record. ``recorder`` groups hit records."""
        execution_id = new_execution_id()
        own = lease is None
        held = Lease(stores.home.leases, execution_id) if lease is None else lease
        record = ExecutionRecord.begun(execution_id, req.ref, req.adapter, plan=req.plan, seed=req.seed,
                                       started_ms=now_ms())
        charging = Charging(stores, req.plan, execution_id, req.adapter_options)
        return cls(stores, req, held, execution_id, record, charging, record_paths, shared_lease=not own,
                   recorder=recorder, warn=warn)

    @property
    def workspace(self) -> Path:
        """Where this run's workspace goes: ``work-v1/<execution id>``, or for a run sharing its
        batch's lease ``work-v1/<lease owner>/<execution id>`` — gc keeps a workspace whose
        top-level name is a held lease (:func:`theoryx.store.leftovers.abandoned_workspaces`)."""
        work = self.stores.home.work
        return work / self.lease.owner / self.execution_id if self.shared_lease else work / self.execution_id

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def close(self) -> None:
        if not self.shared_lease:
            self.lease.release()

    def leased(self, cid: str, use: Callable[[], T]) -> T:
        """Run ``use`` on a blob this run has leased. If a concurrent gc withdrew it between its
        last lease read and its rename, put it back now — gc's own recovery would, because the
        lease names it — and try once more."""
        try:
            return use()
        except BlobNotFound:
            if not self.stores.cas.reinstate(cid):
                raise StoreError(f"blob {cid} vanished from the store during the run (see `theoryx verify`)") from None
            return use()
