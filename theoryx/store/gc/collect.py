"""``theoryx gc``: drop what nobody needs, never what a run in flight needs.

One gc at a time (:class:`~theoryx.store.gc.lock.GcLock`). In order:

1. *recover*: blobs an interrupted gc withdrew (``cas-v1/trash``) are put back, to be decided anew;
   lease files nobody holds are removed (:func:`~theoryx.store.gc.watch.stale_leases`);
2. *mark*: one read transaction gives the roots (:mod:`theoryx.store.liveness`); the leases are read;
3. *evict*: with ``max_age_s``, cache entries and execution records unused for that long go
   (pinned ones, and the records that produced kept entries, stay); with ``max_size``, the least
   recently used entries go until what would remain fits;
4. *sweep*: one pass over the store (shard by shard, so memory does not grow with it) classes
   every blob live, young (mtime, read by that pass a moment before, within the grace period),
   leased, or unneeded; for an unneeded one the leases are re-read right then, and it is renamed
   into ``cas-v1/trash`` (:meth:`cas.Store.withdraw`): from then on the store answers "absent",
   so a run that now wants it stores it anew or misses;
5. *recheck*: the leases are read once more and then the roots (in that order); a withdrawn blob
   that a lease, an entry or a pin now names, or that was freshened before it was withdrawn, is
   reinstated; the others are unlinked;
6. temp files under ``cas-v1/tmp`` that no writer holds (each write ``flock``s its own) and
   untouched (mtime and ctime) for the grace period are removed;
7. what killed runs left (:mod:`theoryx.store.leftovers`): workspaces under ``work-v1/`` whose
   run holds no lease, untouched for the grace period, and lease temp files nobody holds, older
   than the grace period and than :data:`~theoryx.store.gc.watch.STALE_AFTER_S`.

Why a run in flight never loses a blob: the run adds a cid to its lease (or freshens the blob by
storing it) *before* it checks that the blob exists; and a blob written or freshened since the
oldest run in flight began is kept whatever the grace (it may be one a run wrote and has not yet
listed: :meth:`~theoryx.store.gc.watch.LeaseWatcher.in_flight_since`). If it did so before step 5 read the leases,
step 5 sees the lease, or — when the run has ended — the cache entry it recorded before releasing
its lease (the roots are read after the leases). If it did so later, the blob was already out of
sight, so the run did not count on it. With ``dry_run`` nothing is changed but the recovery of
step 1, and the figures are the ones a real gc would report.

Sync points (:mod:`theoryx.core.syncpoints`) for tests: ``gc_after_mark`` (nothing changed yet),
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
from theoryx.core import syncpoints
from theoryx.store import action_cache, executions, leftovers
from theoryx.store.db import Database
from theoryx.store.gc import last
from theoryx.store.gc.lock import GcLock
from theoryx.store.gc.watch import STALE_AFTER_S, LeaseWatcher, stale_leases
from theoryx.store.handle import Stores
from theoryx.store.home import home_error
from theoryx.store.liveness import Closure, EntryRef, EntryRoots, RecordRef, RefReader, Snapshot, closure, snapshot

DEFAULT_GRACE_S = 3600.0
ProgressFn = Callable[[str, int, "int | None"], None]
"""``progress(phase, done, total)``; ``total`` is None while unknown."""

_PROGRESS_EVERY = 4096
PURGE_THREADS = 8
_PURGE_BATCH = 1024


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
    workspaces: Tally = field(default_factory=Tally)
    """Abandoned workspaces removed (files and bytes: all under them)."""
    lease_temp_files: int = 0
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
                   "restored", "temp_files", "workspaces")
        body: dict[str, Any] = {name: getattr(self, name).to_dict() for name in tallies}
        body.update({
            "dry_run": self.dry_run, "grace_s": self.grace_s, "max_age_s": self.max_age_s,
            "max_size": self.max_size, "fits": self.fits, "seconds": round(self.seconds, 3),
            "cache_entries": {"before": self.entries, "evicted_by_age": self.entries_evicted_by_age,
                              "evicted_by_size": self.entries_evicted_by_size},
            "executions": {"before": self.records, "dropped": self.records_dropped},
            "pins": self.pins, "stale_leases_removed": self.stale_leases,
            "lease_temp_files_removed": self.lease_temp_files,
            "recovered_from_interrupted_gc": self.recovered,
        })
        return body


def collect(stores: Stores, *, dry_run: bool = False, grace_s: float = DEFAULT_GRACE_S,
            max_age_s: float | None = None, max_size: int | None = None,
            clock: Callable[[], float] = time.time, progress: ProgressFn | None = None) -> GcReport:
    """Run one gc over ``stores`` (see the module docstring); :class:`StoreBusy` if one is running.

    ``clock`` is the wall clock ages are measured against (tests move it forward).
    """
    try:
        with GcLock(stores.home.root, "theoryx gc"):
            stores.home.check()   # a link in place of work-v1 or cas-v1/tmp would point the sweeps outside
            gc = _Collector(stores, GcReport(dry_run, grace_s, max_age_s, max_size), clock, progress)
            report = gc.run()
            if not dry_run:   # for people (theoryx ui's Store page); written while the lock is held
                last.record(stores.home.root, report.to_dict())
            return report
    except OSError as exc:    # a permission, a read-only mount, a file where a folder belongs...
        mapped = home_error(exc, stores.home.root, anywhere=True)
        if mapped is None:
            raise
        raise mapped from exc


@dataclass
class _Plan:
    """Decisions taken from one snapshot, before anything is changed."""

    live: set[str] = field(default_factory=set)
    evict: list[EntryRef] = field(default_factory=list)
    drop: list[RecordRef] = field(default_factory=list)


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
            self.sweep(plan.live, leases)
            del plan  # the recheck reads the roots afresh; keep one live set in memory at a time
            syncpoints.point("gc_after_withdraw")
            if not self.report.dry_run:
                self.recheck(leases)
        self.remove_temps()
        self.remove_leftovers()
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
                leftovers.remove_tree(path)   # a stray directory named like a lease too; links not followed
        return [path.name for path in stale]

    # -- 2-3. mark and plan the evictions --------------------------------------------------

    def plan(self, leased: set[str]) -> _Plan:
        snap = snapshot(self.db)
        report, plan = self.report, _Plan()
        report.entries, report.records, report.pins = len(snap.entries), len(snap.records), len(snap.pins)
        if report.max_age_s is not None:
            plan.evict, plan.drop = self.by_age(snap, report.max_age_s)
            report.entries_evicted_by_age, report.records_dropped = len(plan.evict), len(plan.drop)
        view = snap.without((e.memo_key for e in plan.evict), (r.execution_id for r in plan.drop))
        del snap
        roots = closure(view, self.refs)
        if report.max_size is not None:
            by_size = self.by_size(roots, leased)
            plan.evict += by_size
            report.entries_evicted_by_size = len(by_size)
            gone = {e.memo_key for e in by_size}
            roots = Closure([e for e in roots.entries if e.entry.memo_key not in gone], roots.pinned)
        plan.live = roots.cids()
        return plan

    def by_age(self, snap: Snapshot, max_age_s: float) -> tuple[list[EntryRef], list[RecordRef]]:
        cutoff_ms = (self.clock() - max_age_s) * 1000
        pinned_results = snap.pinned_results()
        evict = [e for e in snap.entries.values()
                 if e.last_used_ms < cutoff_ms and (e.memo_key, e.manifest_cid) not in pinned_results]
        gone = {e.memo_key for e in evict}
        producers = {e.execution_id for e in snap.entries.values() if e.memo_key not in gone}
        drop = [r for r in snap.records.values()
                if r.ended_ms < cutoff_ms and r.execution_id not in snap.pins and r.execution_id not in producers]
        return evict, drop

    def by_size(self, roots: Closure, leased: set[str]) -> list[EntryRef]:
        """Evict least recently used entries until the blobs that would remain fit ``max_size``.

        What remains: every blob some kept root or lease names, and every blob within the grace
        period; so one pass over the store first measures them."""
        limit, grace, now = self.report.max_size or 0, self.report.grace_s, self.clock()
        refcount: Counter[str] = Counter()
        for cids in [e.cids for e in roots.entries] + list(roots.pinned.values()):
            refcount.update(cids)
        named: dict[str, tuple[int, bool]] = {}   # cid -> (size, old) of the blobs roots name
        kept = 0
        for n, (cid, st) in enumerate(self.cas.iter_blob_stats(), 1):
            old = now - st.st_mtime > grace
            if cid in refcount and cid not in leased:
                named[cid] = (st.st_size, old)
            if cid in refcount or cid in leased or not old:
                kept += st.st_size
            if n % _PROGRESS_EVERY == 0:
                self.progress("size", n, None)
        evicted = []
        lru: Iterable[EntryRoots] = sorted((e for e in roots.entries if not e.pinned),
                                           key=lambda e: (e.entry.last_used_ms, e.entry.memo_key))
        for roots_of in lru:
            if kept <= limit:
                break
            evicted.append(roots_of.entry)
            for cid in roots_of.cids:
                refcount[cid] -= 1
                if refcount[cid] == 0 and cid in named and named[cid][1]:
                    kept -= named[cid][0]
        self.report.fits = kept <= limit
        return evicted

    # -- 3'. apply the evictions -----------------------------------------------------------

    def evict(self, plan: _Plan) -> None:
        """Delete the planned entries that are unchanged since the snapshot, and the records."""
        db = self.db

        def fn(txn: lmdb.Transaction) -> list[EntryRef]:
            # One write transaction: each entry is compared with its snapshot and deleted
            # atomically, so an entry a hit rewrote meanwhile is never lost.
            skipped = []
            for entry in plan.evict:
                if action_cache.delete_unchanged_in(txn, db, entry.memo_key, entry.raw) == "changed":
                    skipped.append(entry)  # used (or replaced) since the snapshot: it stays
            producers = {e.execution_id for e in skipped}
            for rec in plan.drop:
                if rec.execution_id not in producers:
                    executions.drop_in(txn, db, rec.execution_id)
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
            plan.live |= closure(snapshot(self.db), self.refs).cids()

    # -- 4-5. scan and withdraw ------------------------------------------------------------

    def sweep(self, live: set[str], leases: LeaseWatcher) -> None:
        """One pass over the store: class each blob, and withdraw each unneeded one right after
        re-reading the leases (its mtime was read by the scan a moment before)."""
        report, grace = self.report, self.report.grace_s
        examined = report.examined
        for cid, st in self.cas.iter_blob_stats():
            examined.count += 1
            examined.bytes += st.st_size
            if examined.count % _PROGRESS_EVERY == 0:
                self.progress("sweep", examined.count, None)
            if cid in live:
                continue
            if self.clock() - st.st_mtime <= grace:
                report.kept_young.add(st.st_size)
            elif cid in leases.poll() or leases.in_flight_since(st.st_mtime):
                report.kept_leased.add(st.st_size)
            elif report.dry_run:
                report.reclaimed.add(st.st_size)
            elif self.cas.withdraw(cid):
                syncpoints.point("gc_withdrawing")
            else:  # removed behind our back (by hand): not ours to count
                examined.count -= 1
                examined.bytes -= st.st_size

    # -- 6. recheck, then purge or reinstate -----------------------------------------------

    def recheck(self, leases: LeaseWatcher) -> None:
        leased = set(leases.poll())  # the leases first, then the roots: see the module docstring
        live = closure(snapshot(self.db), self.refs).cids()
        grace = self.report.grace_s
        doomed = []
        for cid in self.cas.withdrawn():
            st = self.cas.withdrawn_stat(cid)
            if st is None:
                continue
            young = self.clock() - st.st_mtime <= grace
            if cid in leased or cid in live or young or leases.in_flight_since(st.st_mtime):
                self.cas.reinstate(cid)
                self.report.restored.add(st.st_size)
            else:
                doomed.append(cid)
                self.report.reclaimed.add(st.st_size)
        del live
        # Unlinking waits on the filesystem's journal (and discards), not on the CPU: in
        # parallel it goes several times faster.
        batches = [doomed[i:i + _PURGE_BATCH] for i in range(0, len(doomed), _PURGE_BATCH)]
        with ThreadPoolExecutor(PURGE_THREADS, thread_name_prefix="gc-purge") as pool:
            done = 0
            for n in pool.map(lambda batch: sum(map(self.cas.purge, batch)), batches):
                done += n
                self.progress("purge", done, len(doomed))

    # -- 7. temp files ---------------------------------------------------------------------

    def remove_temps(self) -> None:
        """Temp files no writer holds (every write locks its own) and untouched for the grace."""
        now = self.clock()
        for path in self.cas.tmp_files():
            size = self.cas.remove_temp(path, older_than_s=self.report.grace_s, now=now,
                                        dry_run=self.report.dry_run)
            if size is not None:
                self.report.temp_files.add(size)


    # -- 8. what killed runs left ----------------------------------------------------------

    def remove_leftovers(self) -> None:
        now, grace, dry = self.clock(), self.report.grace_s, self.report.dry_run
        for ws in leftovers.abandoned_workspaces(self.home, now):
            if ws.age_s > grace and (dry or leftovers.remove_workspace(ws, self.home)):
                self.report.workspaces.add(ws.bytes)
        for temp in leftovers.lease_temps(self.home, now):
            # Unheld for a moment while it is born (between its creation and its flock): the
            # same floor as for stale lease files, whatever the grace.
            if temp.age_s > max(grace, STALE_AFTER_S):
                self.report.lease_temp_files += 1
                if not dry:
                    temp.path.unlink(missing_ok=True)


def _stat(cas: Store, cid: str) -> os.stat_result | None:
    try:
        return os.stat(cas.path(cid))
    except FileNotFoundError:
        return None
