"""What the store must keep: the blobs the database names, as gc and verify both see them.

A blob is *live* when it is in the closure of

- a cache entry: its action pre-image, manifest, outputs, stdout/stderr and input blobs, every
  cid written in the action pre-image (the image context manifest, attachments), and the
  receipt, index and logs of the executions whose result the entry holds: the miss that produced
  it and the hits it served (an execution whose entry was replaced, even by an equal result, is
  not among them);
- a pinned execution: every blob its record names and every cid its action pre-image names.

In-flight runs add their leases (:mod:`theoryx.store.gc.watch`); execution records are *not* roots on
their own: a record whose result no entry or pin holds any longer is *pruned* once gc removes
its blobs (the record stays, as history, until ``--max-age`` drops it).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass

import lmdb

from cas import CasError, Store
from theoryx.store import action_cache, executions, pins
from theoryx.store.action_cache import ActionResult
from theoryx.store.db import Database
from theoryx.store.executions import ExecutionRecord

_CID = re.compile(rb"b3:[0-9a-f]{64}")
REF_SCAN_LIMIT = 4 << 20
"""Action pre-images larger than this are not scanned for the cids they name."""


@dataclass(frozen=True, slots=True)
class EntryRef:
    """What gc and verify need of a cache entry; ``raw`` is its stored value, so that it is
    deleted only if nobody changed it since (a hit rewrites it)."""

    memo_key: str
    execution_id: str
    manifest_cid: str
    action_cid: str
    last_used_ms: int
    cids: tuple[str, ...]        # ActionResult.blobs(): what a hit needs
    raw: bytes

    @classmethod
    def of(cls, result: ActionResult, raw: bytes, pool: dict[str, str]) -> EntryRef:
        return cls(result.memo_key, result.execution_id, _same(pool, result.manifest_cid),
                   _same(pool, result.action_cid), result.last_used_ms,
                   tuple(_same(pool, c) for c in result.blobs()), raw)


@dataclass(frozen=True, slots=True)
class RecordRef:
    """What gc and verify need of an execution record."""

    execution_id: str
    producer: str | None         # a success: itself (a miss) or the execution that served it (a hit)
    memo_key: str | None
    manifest_cid: str | None
    action_cid: str | None
    receipt_cid: str | None
    ended_ms: int
    cids: tuple[str, ...]        # ExecutionRecord.blobs()

    @classmethod
    def of(cls, rec: ExecutionRecord, pool: dict[str, str]) -> RecordRef:
        producer = None
        if rec.status == "success":
            producer = rec.source_execution if rec.cache == "hit" else rec.execution_id
        return cls(rec.execution_id, producer, rec.memo_key, _maybe(pool, rec.manifest_cid),
                   _maybe(pool, rec.action_cid), _maybe(pool, rec.receipt_cid),
                   rec.started_ms + rec.duration_ms, tuple(_same(pool, c) for c in rec.blobs()))


def _same(pool: dict[str, str], cid: str) -> str:
    """One string object per cid: entries and records name the same blobs many times over."""
    return pool.setdefault(cid, cid)


def _maybe(pool: dict[str, str], cid: str | None) -> str | None:
    return _same(pool, cid) if cid else None


@dataclass(frozen=True)
class Snapshot:
    """The roots as one read transaction saw them, in compact form (a store holds many)."""

    entries: dict[str, EntryRef]
    records: dict[str, RecordRef]
    pins: frozenset[str]

    def without(self, entries: Iterable[str] = (), records: Iterable[str] = ()) -> Snapshot:
        """This snapshot less some entries (memo keys) and records (execution ids)."""
        gone_e, gone_r = set(entries), set(records)
        return Snapshot({k: v for k, v in self.entries.items() if k not in gone_e},
                        {k: v for k, v in self.records.items() if k not in gone_r}, self.pins)

    def results(self) -> dict[str, list[RecordRef]]:
        """Successful records grouped by the execution that produced their result: a miss by
        itself, a hit by the execution whose cache entry served it."""
        groups: dict[str, list[RecordRef]] = {}
        for rec in self.records.values():
            if rec.producer:
                groups.setdefault(rec.producer, []).append(rec)
        return groups

    def pinned_results(self) -> set[tuple[str | None, str | None]]:
        """``(memo key, manifest cid)`` of every pinned execution: entries holding them stay."""
        return {(r.memo_key, r.manifest_cid) for i in self.pins if (r := self.records.get(i))}


def snapshot(db: Database) -> Snapshot:
    """Read every cache entry, execution record and pin in one consistent transaction."""

    def read(txn: lmdb.Transaction) -> Snapshot:
        pool: dict[str, str] = {}
        entries = {key: EntryRef.of(result, raw, pool)
                   for key, result, raw in action_cache.raw_entries_in(txn, db)}
        records = {key: RecordRef.of(rec, pool) for key, rec in executions.records_in(txn, db)}
        return Snapshot(entries, records, pins.pinned_ids_in(txn, db))

    return db.read(read)


@dataclass(frozen=True)
class EntryRoots:
    """One cache entry and every cid it keeps live."""

    entry: EntryRef
    cids: tuple[str, ...]   # a tuple: a store holds many entries, and a set costs 5 times more
    pinned: bool


@dataclass
class Closure:
    """The live set of a snapshot: per entry, per pinned execution, and overall."""

    entries: list[EntryRoots]
    pinned: dict[str, frozenset[str]]

    def cids(self) -> set[str]:
        live: set[str] = set()
        for e in self.entries:
            live.update(e.cids)
        for cids in self.pinned.values():
            live |= cids
        return live


class RefReader:
    """Reads the cids an action pre-image names, once per pre-image (they are immutable)."""

    def __init__(self, cas: Store) -> None:
        self.cas = cas
        self._seen: dict[str, frozenset[str]] = {}

    def __call__(self, action_cid: str | None) -> frozenset[str]:
        if not action_cid:
            return frozenset()
        found = self._seen.get(action_cid)
        if found is None:
            found = self._seen[action_cid] = frozenset(_refs_in(self.cas, action_cid))
        return found


def _refs_in(cas: Store, cid: str) -> set[str]:
    # Read without hashing: a corrupt pre-image only names fewer or odd cids, which keep
    # nothing that should go; verify is where corruption is found.
    data = read_small(cas, cid, REF_SCAN_LIMIT)
    return {m.decode() for m in _CID.findall(data)} if data else set()


def read_small(cas: Store, cid: str, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of blob ``cid`` (not checked against the cid); None if absent.
    Plain descriptor reads: many small blobs are read per gc, and file objects cost more."""
    from cas.staging import READ_FLAGS

    try:       # never blocks on a FIFO nor follows a link in a blob's place
        fd = os.open(cas.path(cid), READ_FLAGS)
    except (OSError, CasError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        parts = []
        while limit > 0 and (chunk := os.read(fd, min(limit, 64 << 10))):
            parts.append(chunk)
            limit -= len(chunk)
        return b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)


def closure(snap: Snapshot, refs: RefReader) -> Closure:
    """Everything ``snap``'s entries and pins keep live (see the module docstring)."""
    groups = snap.results()
    pinned_results = snap.pinned_results()
    entries = []
    for memo_key, entry in snap.entries.items():
        cids = set(entry.cids) | refs(entry.action_cid)
        for rec in groups.get(entry.execution_id, ()):
            cids.update(rec.cids)
            cids |= refs(rec.action_cid)
        entries.append(EntryRoots(entry, tuple(cids), (memo_key, entry.manifest_cid) in pinned_results))
    pinned = {}
    for exec_id in snap.pins:
        pin = snap.records.get(exec_id)
        if pin is not None:
            pinned[exec_id] = frozenset(pin.cids) | refs(pin.action_cid)
    return Closure(entries, pinned)
