"""``theoryx gc``: drop what nobody needs, never what a run in flight needs.

One gc at a time (:class:`~theoryx.gclock.GcLock`). In order:

1. *recover*: blobs an interrupted gc withdrew (``cas-v1/trash``) are put back, to be decided anew;
   lease files nobody holds are removed (:func:`~theoryx.leasewatch.stale_leases`);
2. *mark*: one read transaction gives the roots (:mod:`theoryx.liveness`); the leases are read;
3. *evict*: with ``max_age_s``, cache entries and execution records unused for that long go
   (pinned ones, and the records that produced kept entries, stay); with ``max_size``, the least
   recently used entries go until what would remain fits;
4. *scan*: every blob is classed live, leased, young (mtime within the grace period) or a candidate;
5. *withdraw*: right before each candidate goes, the leases are re-read and its mtime checked
   again; then it is renamed into ``cas-v1/trash`` (:meth:`cas.Store.withdraw`) — from then on
   the store answers "absent", so a run that now wants it stores it anew or misses;
6. *recheck*: the leases are read once more and then the roots (in that order); a withdrawn blob
   that a lease, an entry or a pin now names, or that was freshened before it was withdrawn, is
   reinstated; the others are purged;
7. temp files under ``cas-v1/tmp`` untouched (mtime and ctime) for the grace period are removed.

Why a run in flight never loses a blob: the run adds a cid to its lease (or freshens the blob by
storing it) *before* it checks that the blob exists. If it did so before step 6 read the leases,
step 6 sees the lease, or — when the run has ended — the cache entry it recorded before releasing
its lease (the roots are read after the leases). If it did so later, the blob was already out of
sight, so the run did not count on it. With ``dry_run`` nothing is changed but the recovery of
step 1, and the figures are the ones a real gc would report.

Sync points (:mod:`theoryx.syncpoints`) for tests: ``gc_after_mark`` (nothing changed yet),
``gc_withdrawing`` (after each withdrawal), ``gc_after_withdraw`` (before the recheck).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import lmdb

from cas import Store

from . import syncpoints
from .action_cache import ActionResult
from .db import Database, unpack
from .executions import ExecutionRecord
from .gclock import GcLock
from .leasewatch import LeaseWatcher, stale_leases
from .liveness import Closure, EntryRoots, RefReader, Snapshot, closure, snapshot
from .stores import Stores

DEFAULT_GRACE_S = 3600.0
ProgressFn = Callable[[str, int, "int | None"], None]
"""``progress(phase, done, total)``; ``total`` is None while unknown."""

_PROGRESS_EVERY = 4096
PURGE_THREADS = 8


@dataclass
class Tally:
    """A number of blobs (or files) and their bytes."""

    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}


@dataclass
class GcReport:
    """What one gc examined, kept and reclaimed. Kept = examined - reclaimed; its parts say why."""

    dry_run: bool
    grace_s: float
    max_age_s: float | None = None
    max_size: int | None = None
    examined: Tally = field(default_factory=Tally)
    reclaimed: Tally = field(default_factory=Tally)
    kept_live: Tally = field(default_factory=Tally)
    kept_leased: Tally = field(default_factory=Tally)
    kept_young: Tally = field(default_factory=Tally)
    restored: Tally = field(default_factory=Tally)
    temp_files: Tally = field(default_factory=Tally)
    entries: int = 0
    entries_evicted_by_age: int = 0
    entries_evicted_by_size: int = 0
    records: int = 0
    records_dropped: int = 0
    pins: int = 0
    stale_leases: int = 0
    recovered: int = 0
    fits: bool | None = None
    seconds: float = 0.0

    @property
    def kept(self) -> Tally:
        return Tally(self.examined.count - self.reclaimed.count, self.examined.bytes - self.reclaimed.bytes)

    def to_dict(self) -> dict[str, Any]:
        tallies = ("examined", "kept", "reclaimed", "kept_live", "kept_leased", "kept_young",
                   "restored", "temp_files")
        body: dict[str, Any] = {name: getattr(self, name).to_dict() for name in tallies}
        body.update({
            "dry_run": self.dry_run, "grace_s": self.grace_s, "max_age_s": self.max_age_s,
            "max_size": self.max_size, "fits": self.fits, "seconds": round(self.seconds, 3),
            "cache_entries": {"before": self.entries, "evicted_by_age": self.entries_evicted_by_age,
                              "evicted_by_size": self.entries_evicted_by_size},
            "executions": {"before": self.records, "dropped": self.records_dropped},
            "pins": self.pins, "stale_leases_removed": self.stale_leases,
            "recovered_from_interrupted_gc": self.recovered,
        })
        return body


def collect(stores: Stores, *, dry_run: bool = False, grace_s: float = DEFAULT_GRACE_S,
            max_age_s: float | None = None, max_size: int | None = None,
            clock: Callable[[], float] = time.time, progress: ProgressFn | None = None) -> GcReport:
    """Run one gc over ``stores`` (see the module docstring); :class:`StoreBusy` if one is running.

    ``clock`` is the wall clock ages are measured against (tests move it forward).
    """
    with GcLock(stores.home.root, "theoryx gc"):
        gc = _Collector(stores, GcReport(dry_run, grace_s, max_age_s, max_size), clock, progress)
        return gc.run()


@dataclass
class _Plan:
    """Decisions taken from one snapshot, before anything is changed."""

    evict: list[ActionResult] = field(default_factory=list)
    drop: list[ExecutionRecord] = field(default_factory=list)
    candidates: list[tuple[str, int]] = field(default_factory=list)


class _Collector:
    def __init__(self, stores: Stores, report: GcReport, clock: Callable[[], float],
                 progress: ProgressFn | None) -> None:
        self.cas: Store = stores.cas
        self.db: Database = stores.db
        self.home = stores.home
        self.report = report
        self.clock = clock
        self.progress = progress or (lambda phase, done, total: None)
        self.refs = RefReader(stores.cas)

    def run(self) -> GcReport:
        started = time.monotonic()
        stale = self.recover()
        with LeaseWatcher(self.home.leases, frozenset(stale)) as leases:
            leases.poll()
            plan = self.plan(leases.cids)
            syncpoints.point("gc_after_mark")
            if not self.report.dry_run:
                self.evict(plan)
            trashed = self.withdraw(plan.candidates, leases)
            syncpoints.point("gc_after_withdraw")
            self.recheck(trashed, leases)
        self.remove_temps()
        report = self.report
        others = (report.kept_leased, report.kept_young, report.restored)
        report.kept_live = Tally(report.kept.count - sum(t.count for t in others),
                                 report.kept.bytes - sum(t.bytes for t in others))
        report.seconds = time.monotonic() - started
        return report

    # -- 1. recover ------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Put back what an interrupted gc withdrew; remove stale leases (return their names)."""
        for cid in list(self.cas.withdrawn()):
            self.report.recovered += self.cas.reinstate(cid)
        stale = stale_leases(self.home.leases, self.clock())
        self.report.stale_leases = len(stale)
        if not self.report.dry_run:
            for path in stale:
                path.unlink(missing_ok=True)
        return [path.name for path in stale]

    # -- 2-4. mark, plan evictions, scan ---------------------------------------------------

    def plan(self, leased: set[str]) -> _Plan:
        snap = snapshot(self.db)
        report, plan = self.report, _Plan()
        report.entries, report.records, report.pins = len(snap.entries), len(snap.records), len(snap.pins)
        if report.max_age_s is not None:
            plan.evict, plan.drop = self.by_age(snap, report.max_age_s)
            report.entries_evicted_by_age, report.records_dropped = len(plan.evict), len(plan.drop)
        view = snap.without((e.memo_key for e in plan.evict), (r.execution_id for r in plan.drop))
        roots = closure(view, self.refs)
        refcount: Counter[str] = Counter()
        for cids in [e.cids for e in roots.entries] + list(roots.pinned.values()):
            refcount.update(cids)
        protected, young_bytes = self.scan(refcount, leased, plan)
        if report.max_size is not None:
            by_size = self.by_size(roots, refcount, leased, protected, young_bytes, plan)
            plan.evict += by_size
            report.entries_evicted_by_size = len(by_size)
        return plan

    def by_age(self, snap: Snapshot, max_age_s: float) -> tuple[list[ActionResult], list[ExecutionRecord]]:
        cutoff_ms = (self.clock() - max_age_s) * 1000
        pinned_results = {(r.memo_key, r.manifest_cid) for i in snap.pins if (r := snap.records.get(i))}
        evict = [e for e in snap.entries.values()
                 if e.last_used_ms < cutoff_ms and (e.memo_key, e.manifest_cid) not in pinned_results]
        gone = {e.memo_key for e in evict}
        producers = {e.execution_id for e in snap.entries.values() if e.memo_key not in gone}
        drop = [r for r in snap.records.values()
                if r.started_ms + r.duration_ms < cutoff_ms and r.execution_id not in snap.pins
                and r.execution_id not in producers]
        return evict, drop

    def scan(self, refcount: Counter[str], leased: set[str], plan: _Plan) -> tuple[dict[str, tuple[int, bool]], int]:
        """Class every blob; returns the protected ones (cid -> size, old) and the young bytes."""
        report, now, grace = self.report, self.clock(), self.report.grace_s
        protected: dict[str, tuple[int, bool]] = {}
        young_bytes = 0
        for n, (blob, st) in enumerate(self.cas.iter_blob_stats(), 1):
            report.examined.add(blob.size)
            old = now - st.st_mtime > grace
            if blob.cid in refcount:
                protected[blob.cid] = (blob.size, old)
            elif blob.cid in leased:
                protected[blob.cid] = (blob.size, old)
                report.kept_leased.add(blob.size)
            elif old:
                plan.candidates.append((blob.cid, blob.size))
            else:
                young_bytes += blob.size
                report.kept_young.add(blob.size)
            if n % _PROGRESS_EVERY == 0:
                self.progress("scan", n, None)
        return protected, young_bytes

    def by_size(self, roots: Closure, refcount: Counter[str], leased: set[str],
                protected: dict[str, tuple[int, bool]], young_bytes: int, plan: _Plan) -> list[ActionResult]:
        """Evict least recently used entries until the blobs that would remain fit ``max_size``."""
        limit = self.report.max_size or 0
        kept = young_bytes + sum(size for size, _ in protected.values())
        evicted = []
        lru: Iterable[EntryRoots] = sorted((e for e in roots.entries if not e.pinned),
                                           key=lambda e: (e.entry.last_used_ms, e.entry.memo_key))
        for roots_of in lru:
            if kept <= limit:
                break
            evicted.append(roots_of.entry)
            for cid in roots_of.cids:
                refcount[cid] -= 1
                if refcount[cid] == 0 and cid not in leased and cid in protected:
                    size, old = protected[cid]
                    if old:
                        kept -= size
                        plan.candidates.append((cid, size))
        self.report.fits = kept <= limit
        return evicted

    # -- 3'. apply the evictions -----------------------------------------------------------

    def evict(self, plan: _Plan) -> None:
        """Delete the planned entries that are unchanged since the snapshot, and the records."""
        dbs = self.db.dbs

        def fn(txn: lmdb.Transaction) -> list[ActionResult]:
            skipped = []
            for entry in plan.evict:
                raw = txn.get(entry.memo_key.encode(), db=dbs["ac"])
                if raw is not None and ActionResult.from_dict(unpack(bytes(raw))) == entry:
                    txn.delete(entry.memo_key.encode(), db=dbs["ac"])
                elif raw is not None:
                    skipped.append(entry)  # used (or replaced) since the snapshot: it stays
            producers = {e.execution_id for e in skipped}
            for rec in plan.drop:
                if rec.execution_id in producers:
                    continue
                txn.delete(rec.execution_id.encode(), db=dbs["executions"])
                for out in rec.outputs:
                    raw = txn.get(out.path.encode(), db=dbs["paths"])
                    if raw is not None and unpack(bytes(raw)).get("execution_id") == rec.execution_id:
                        txn.delete(out.path.encode(), db=dbs["paths"])
            return skipped

        skipped = self.db.write(fn) if plan.evict or plan.drop else []
        if skipped:
            # Some entries came back into use: they stay, and so does everything live now.
            by_size = {e.memo_key for e in plan.evict[len(plan.evict) - self.report.entries_evicted_by_size:]}
            for entry in skipped:
                if entry.memo_key in by_size:
                    self.report.entries_evicted_by_size -= 1
                else:
                    self.report.entries_evicted_by_age -= 1
            producers = {e.execution_id for e in skipped}
            self.report.records_dropped -= sum(1 for r in plan.drop if r.execution_id in producers)
            live = closure(snapshot(self.db), self.refs).cids()
            plan.candidates = [(cid, size) for cid, size in plan.candidates if cid not in live]

    # -- 5. withdraw -----------------------------------------------------------------------

    def withdraw(self, candidates: list[tuple[str, int]], leases: LeaseWatcher) -> list[tuple[str, int]]:
        report, grace = self.report, self.report.grace_s
        trashed: list[tuple[str, int]] = []
        for n, (cid, size) in enumerate(sorted(candidates), 1):
            if cid in leases.poll():
                report.kept_leased.add(size)
            elif (st := _stat(self.cas, cid)) is None:
                report.examined.count -= 1  # removed behind our back (by hand): not ours to count
                report.examined.bytes -= size
            elif self.clock() - st.st_mtime <= grace:
                report.kept_young.add(size)
            elif report.dry_run:
                report.reclaimed.add(size)
            elif self.cas.withdraw(cid):
                trashed.append((cid, size))
                syncpoints.point("gc_withdrawing")
            if n % 256 == 0:
                self.progress("sweep", n, len(candidates))
        self.progress("sweep", len(candidates), len(candidates))
        return trashed

    # -- 6. recheck, then purge or reinstate -----------------------------------------------

    def recheck(self, trashed: list[tuple[str, int]], leases: LeaseWatcher) -> None:
        if not trashed:
            return
        leased = set(leases.poll())  # the leases first, then the roots: see the module docstring
        live = closure(snapshot(self.db), self.refs).cids()
        grace = self.report.grace_s
        doomed = []
        for cid, size in trashed:
            st = self.cas.withdrawn_stat(cid)
            fresh = st is not None and self.clock() - st.st_mtime <= grace
            if cid in leased or cid in live or fresh:
                self.cas.reinstate(cid)
                self.report.restored.add(size)
            else:
                doomed.append(cid)
                self.report.reclaimed.add(size)
        # Unlinking waits on the filesystem's journal (and discards), not on the CPU: in
        # parallel it goes several times faster.
        with ThreadPoolExecutor(PURGE_THREADS, thread_name_prefix="gc-purge") as pool:
            for n, _ in enumerate(pool.map(self.cas.purge, doomed, chunksize=256), 1):
                if n % _PROGRESS_EVERY == 0 or n == len(doomed):
                    self.progress("purge", n, len(doomed))

    # -- 7. temp files ---------------------------------------------------------------------

    def remove_temps(self) -> None:
        now = self.clock()
        for path in self.cas.tmp_files():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            # ctime too: a file renamed into tmp/ to be adopted keeps its old mtime.
            if now - max(st.st_mtime, st.st_ctime) > self.report.grace_s:
                self.report.temp_files.add(st.st_size)
                if not self.report.dry_run:
                    path.unlink(missing_ok=True)


def _stat(cas: Store, cid: str) -> os.stat_result | None:
    try:
        return os.stat(cas.path(cid))
    except FileNotFoundError:
        return None
