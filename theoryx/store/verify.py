"""``theoryx verify``: rehash every blob and check every reference the database makes.

Findings:

- *corrupt*: a blob whose bytes do not hash to its name (flipped, truncated, zeroed, swapped...);
- *missing*: a blob that a cache entry, an execution whose result the entry holds (the miss that
  produced it, the hits it served), such an execution's receipt, or a pinned execution needs, and
  the store lacks;
- *quarantined*: blobs found corrupt when they were read (``cat``, ``export``, a run reading an
  output or materialising an input) and moved out of sight by the CAS; a cache entry that needs
  one is judged *missing* (the next run re-executes);
- *orphaned* (informational, not a failure): blobs nothing live names (``gc`` reclaims them once
  past the grace period), temp files, lease files nobody holds, blobs an interrupted gc left
  withdrawn, world paths naming unknown executions, pins of unknown executions, workspaces and
  lease temp files of killed runs (:mod:`theoryx.store.leftovers`; ``gc`` removes them);
- *pruned* (informational): execution records some of whose blobs gc removed.

The store is *clean* when nothing is corrupt or missing. ``repair`` removes the corrupt blobs and
every cache entry whose closure has a corrupt or missing blob, so the next run re-executes; it
puts back what an interrupted gc withdrew and empties the quarantine. A pinned execution cannot
be repaired (re-run it, or unpin it): it keeps the store unclean. Verify holds the gc lock, so
it never runs beside a gc.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import lmdb

from cas import CasError, Store, cid_of_bytes, is_cid
from cas.staging import READ_FLAGS
from theoryx.store import action_cache, executions, leftovers
from theoryx.store.db import Database
from theoryx.store.gc.collect import ProgressFn, Tally
from theoryx.store.gc.lock import GcLock
from theoryx.store.gc.watch import stale_leases
from theoryx.store.handle import Stores
from theoryx.store.home import home_error
from theoryx.store.liveness import EntryRef, RecordRef, RefReader, Snapshot, closure, read_small, snapshot

SMALL = 1 << 20
FIRST_READ = 16 << 10
CHUNK = 256 << 10
RECEIPT_LIMIT = 16 << 20


@dataclass
class Problem:
    """A corrupt or missing blob and who needs it."""

    cid: str
    kind: str                        # "corrupt" | "missing"
    size: int | None = None
    needed_by: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"cid": self.cid, "kind": self.kind, "size": self.size, "needed_by": sorted(self.needed_by)}


@dataclass
class VerifyReport:
    """What verify found (and, with ``repair``, fixed)."""

    repair: bool
    checked: Tally = field(default_factory=Tally)
    corrupt: list[Problem] = field(default_factory=list)
    missing: list[Problem] = field(default_factory=list)
    broken_entries: list[str] = field(default_factory=list)
    broken_pins: list[str] = field(default_factory=list)
    orphaned: Tally = field(default_factory=Tally)
    temp_files: int = 0
    stale_leases: int = 0
    withdrawn: int = 0
    orphaned_paths: int = 0
    orphaned_pins: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    """``{"cid", "size", "file"}`` of each quarantined copy (before the repair, with ``repair``)."""
    abandoned_workspaces: Tally = field(default_factory=Tally)
    lease_temp_files: int = 0
    pruned_executions: int = 0
    removed_blobs: int = 0
    removed_entries: int = 0
    reinstated: int = 0
    unquarantined: int = 0
    seconds: float = 0.0
    hash_seconds: float = 0.0

    @property
    def clean(self) -> bool:
        """Nothing corrupt or missing remains (after the repair, with ``repair``)."""
        if self.repair:
            return not self.broken_pins and self.removed_entries == len(self.broken_entries)
        return not self.corrupt and not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean, "repair": self.repair, "seconds": round(self.seconds, 3),
            "hash_seconds": round(self.hash_seconds, 3),
            "checked": self.checked.to_dict(),
            "corrupt": [p.to_dict() for p in self.corrupt],
            "missing": [p.to_dict() for p in self.missing],
            "quarantined": self.quarantined,
            "broken_cache_entries": self.broken_entries, "broken_pins": self.broken_pins,
            "orphaned": {"blobs": self.orphaned.to_dict(), "temp_files": self.temp_files,
                         "stale_leases": self.stale_leases, "withdrawn_by_interrupted_gc": self.withdrawn,
                         "paths": self.orphaned_paths, "pins": self.orphaned_pins,
                         "abandoned_workspaces": self.abandoned_workspaces.to_dict(),
                         "lease_temp_files": self.lease_temp_files},
            "pruned_executions": self.pruned_executions,
            "repaired": {"blobs_removed": self.removed_blobs, "cache_entries_removed": self.removed_entries,
                         "blobs_reinstated": self.reinstated,
                         "quarantined_removed": self.unquarantined},
        }


def verify(stores: Stores, *, repair: bool = False, workers: int | None = None,
           progress: ProgressFn | None = None) -> VerifyReport:
    """Check ``stores`` (see the module docstring); :class:`StoreBusy` while a gc runs."""
    try:
        with GcLock(stores.home.root, "theoryx verify --repair" if repair else "theoryx verify"):
            stores.home.check()   # a link in place of cas-v1/quarantine would point the repair outside
            return _Verifier(stores, VerifyReport(repair), workers, progress).run()
    except OSError as exc:    # a permission, a read-only mount, a file where a folder belongs...
        mapped = home_error(exc, stores.home.root, anywhere=True)
        if mapped is None:
            raise
        raise mapped from exc


class _Verifier:
    def __init__(self, stores: Stores, report: VerifyReport, workers: int | None,
                 progress: ProgressFn | None) -> None:
        self.stores, self.cas, self.db = stores, stores.cas, stores.db
        self.report = report
        self.workers = workers or min(32, os.cpu_count() or 1)
        self.progress = progress or (lambda phase, done, total: None)
        self.counting = progress is not None
        self.judged: dict[str, tuple[int, int, int] | None] = {}     # corrupt cid -> the file judged

    def run(self) -> VerifyReport:
        started = time.monotonic()
        report = self.report
        if report.repair:
            for cid in list(self.cas.withdrawn()):
                report.reinstated += self.cas.reinstate(cid)
        report.withdrawn = sum(1 for _ in self.cas.withdrawn())
        snap = snapshot(self.db)
        live = closure(snap, RefReader(self.cas)).cids()
        absent, corrupt = self.rehash(live)
        self.judge(self.needs(snap, corrupt), live, absent, corrupt)
        del live, absent
        self.orphans(snap)
        if report.repair:
            self.fix(snap, corrupt)
        report.seconds = time.monotonic() - started
        return report

    # -- blobs -----------------------------------------------------------------------------

    def rehash(self, live: set[str]) -> tuple[set[str], dict[str, int]]:
        """Hash every blob, one shard per task on a thread pool; returns the live cids the store
        lacks and the corrupt blobs (cid -> size)."""
        report, absent, corrupt = self.report, set(live), {}
        started = time.monotonic()
        shards = self.cas.shards()
        total = _count_blobs(self.cas, shards) if self.counting else None
        done = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix="verify") as pool:
            for checked in pool.map(lambda shard: _check_shard(self.cas, shard), shards):
                for cid, size, intact, identity in checked:
                    report.checked.add(size)
                    if cid in live:
                        absent.discard(cid)
                    else:
                        report.orphaned.add(size)
                    if not intact:
                        corrupt[cid] = size
                        self.judged[cid] = identity
                done += len(checked)
                self.progress("verify", done, total)
        report.corrupt = [Problem(cid, "corrupt", size) for cid, size in sorted(corrupt.items())]
        report.hash_seconds = time.monotonic() - started
        return absent, corrupt

    # -- references ------------------------------------------------------------------------

    def needs(self, snap: Snapshot, corrupt: dict[str, int]) -> Iterator[tuple[str, dict[str, set[str]]]]:
        """``("entry:<memo>"|"pin:<id>", {cid: {who needs it}})`` for each root, one at a time."""
        groups = snap.results()
        for memo_key, entry in snap.entries.items():
            need: dict[str, set[str]] = {}
            _want(need, entry.cids, f"cache entry {memo_key}")
            for rec in groups.get(entry.execution_id, ()):
                self.want_record(need, rec, corrupt)
            yield f"entry:{memo_key}", need
        for exec_id in sorted(snap.pins):
            pinned = snap.records.get(exec_id)
            if pinned is not None:
                need = {}
                self.want_record(need, pinned, corrupt)
                yield f"pin:{exec_id}", need

    def want_record(self, need: dict[str, set[str]], rec: RecordRef, corrupt: dict[str, int]) -> None:
        who = f"execution {rec.execution_id}"
        _want(need, rec.cids, who)
        if rec.receipt_cid and rec.receipt_cid not in corrupt:
            _want(need, _receipt_refs(self.cas, rec.receipt_cid), f"receipt of {who}")

    def judge(self, needs: Iterable[tuple[str, dict[str, set[str]]]], live: set[str], absent: set[str],
              corrupt: dict[str, int]) -> None:
        report = self.report
        missing: dict[str, set[str]] = {}
        by_cid = {p.cid: p for p in report.corrupt}
        for root, need in needs:
            broken = False
            for cid, who in need.items():
                if cid in corrupt:
                    by_cid[cid].needed_by.extend(w for w in who if w not in by_cid[cid].needed_by)
                    broken = True
                elif cid in absent or (cid not in live and not self.cas.exists(cid)):
                    missing.setdefault(cid, set()).update(who)
                    broken = True
            if broken:
                kind, _, name = root.partition(":")
                (report.broken_entries if kind == "entry" else report.broken_pins).append(name)
        report.missing = [Problem(cid, "missing", None, sorted(who)) for cid, who in sorted(missing.items())]

    # -- informational ---------------------------------------------------------------------

    def orphans(self, snap: Snapshot) -> None:
        report, home = self.report, self.stores.home
        report.temp_files = sum(1 for _ in self.cas.tmp_files())
        report.stale_leases = len(stale_leases(home.leases))
        now = time.time()
        for ws in leftovers.abandoned_workspaces(home, now):
            report.abandoned_workspaces.add(ws.bytes)
        report.lease_temp_files = sum(1 for _ in leftovers.lease_temps(home, now))
        for cid, path in self.cas.quarantined():
            try:
                size: int | None = path.stat().st_size
            except FileNotFoundError:
                continue
            report.quarantined.append({"cid": cid, "size": size, "file": str(path)})
        report.orphaned_pins = sum(1 for i in snap.pins if i not in snap.records)
        report.orphaned_paths = sum(1 for p in executions.world_paths(self.db) if p.execution_id not in snap.records)
        producers = {e.execution_id for e in snap.entries.values()}
        for rec in snap.records.values():
            if rec.execution_id in snap.pins or rec.producer in producers:
                continue
            if any(not self.cas.exists(c) for c in rec.cids):
                report.pruned_executions += 1

    # -- repair ----------------------------------------------------------------------------

    def fix(self, snap: Snapshot, corrupt: dict[str, int]) -> None:
        report = self.report
        for cid in corrupt:     # only the file judged: not a good copy a run wrote back since
            report.removed_blobs += self.cas.delete(cid, identity=self.judged.get(cid))
        for item in report.quarantined:
            report.unquarantined += self.cas.drop_quarantined(Path(item["file"]))
        entries = [snap.entries[k] for k in report.broken_entries]
        report.removed_entries = self.db.write(lambda txn: _delete_unchanged(self.db, txn, entries))


def _want(need: dict[str, set[str]], cids: Iterable[str], who: str) -> None:
    for cid in cids:
        need.setdefault(cid, set()).add(who)


def _receipt_refs(cas: Store, cid: str) -> list[str]:
    """The blobs a receipt names (its memo key and spec digest are names of no blob)."""
    data = read_small(cas, cid, RECEIPT_LIMIT)
    try:
        body = json.loads(data) if data and cid_of_bytes(data) == cid else None
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    found = [body.get(k) for k in ("action_cid", "manifest_cid", "stdout_cid", "stderr_cid")]
    found += list((body.get("output_cids") or {}).values()) + list(body.get("input_cids") or [])
    found += [o.get("cid") for o in body.get("outputs") or [] if isinstance(o, dict)]
    return [c for c in found if is_cid(c)]


def _delete_unchanged(db: Database, txn: lmdb.Transaction, entries: list[EntryRef]) -> int:
    # An entry used (rewritten) since the snapshot may no longer be broken: it stays, uncounted.
    # One already gone counts as removed: nothing names the broken blobs any more.
    return sum(action_cache.delete_unchanged_in(txn, db, e.memo_key, e.raw) != "changed" for e in entries)


# -- hashing on a thread pool ----------------------------------------------------------------

def _check_shard(cas: Store, shard: str) -> list[tuple[str, int, bool, tuple[int, int, int] | None]]:
    """``(cid, size, intact)`` for each blob of ``shard``. Runs on a worker thread: the reads
    and blake3 release the GIL."""
    return [checked for cid, path in cas.iter_shard(shard) if (checked := _check(cas, cid, path))]


def _check(cas: Store, cid: str, path: Path) -> tuple[str, int, bool, tuple[int, int, int] | None] | None:
    """``(cid, size, intact, (st_dev, st_ino, st_ctime_ns) of the file judged)``, or None if it
    went away. That file is what a repair may remove: a good copy published at the name since
    stays."""
    try:
        fd = os.open(path, READ_FLAGS)
    except FileNotFoundError:
        return None  # removed meanwhile: judged missing if anything needs it
    except OSError:
        return cid, 0, False, _identity(path)  # a link (never followed), or unreadable where a blob should be
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):      # a FIFO (never read: it would block), a device, a directory
            return cid, 0, False, (st.st_dev, st.st_ino, st.st_ctime_ns)
        data = os.read(fd, FIRST_READ)  # tiny blobs: one read, a small buffer
        if len(data) == FIRST_READ and st.st_size >= SMALL:
            os.close(fd)
            fd = -1
            try:
                intact = cas.verify(cid)             # mmap and blake3's own threads
                return cid, st.st_size, intact, (st.st_dev, st.st_ino, st.st_ctime_ns)
            except CasError:
                return None
        hasher = blake3.blake3(data)
        size = len(data)
        while chunk := os.read(fd, CHUNK):
            hasher.update(chunk)
            size += len(chunk)
        if "b3:" + hasher.hexdigest() == cid:
            return cid, size, True, None
        st = os.fstat(fd)
        return cid, size, False, (st.st_dev, st.st_ino, st.st_ctime_ns)
    except OSError:
        return cid, 0, False, None
    finally:
        if fd >= 0:
            os.close(fd)


def _identity(path: Path) -> tuple[int, int, int] | None:
    """``(st_dev, st_ino, st_ctime_ns)`` of what is at ``path`` (not followed), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def _count_blobs(cas: Store, shards: list[str]) -> int:
    return sum(1 for shard in shards for _ in cas.iter_shard(shard))
