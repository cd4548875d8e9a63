"""Execution records: one per ``theoryx run`` (hit, miss or failure), keyed by a time-sortable id.

A record also updates the ``paths`` database so that a world path of an output resolves to the
newest execution that produced it.

The ``counters`` table holds counts and sums over the records (:func:`counts`), maintained in
the transaction of every write or deletion of a record, so ``theoryx stats`` reads them instead of
every record.

This module owns the ``executions``, ``paths`` and ``counters`` tables
(:data:`theoryx.store.db.OWNERS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields

import lmdb

from theoryx.core.frozen import built, replaced
from theoryx.errors import NotFound
from theoryx.store import action_cache
from theoryx.store.action_cache import ActionResult, OutputEntry
from theoryx.store.db import Database, pack, unpack

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

    from theoryx.store.listing import Counts, Page, PathEntry


@dataclass(frozen=True)
class ExecutionRecord:
    """What one execution was and what it produced. Money in integer micro-USD."""

    execution_id: str
    ref: str
    adapter: str
    status: str                           # "success" | "error"
    cache: str | None = None              # "hit" | "miss" | "bypass" (executed without a lookup:
                                          # --no-cache, an audit's replay) | None (failed before it)
    plan: str | None = None
    memo_key: str | None = None
    action_cid: str | None = None
    spec_digest: str | None = None
    env_fingerprint: str | None = None
    seed: int = 0
    write_prefix: str | None = None
    outputs: tuple[OutputEntry, ...] = ()
    manifest_cid: str | None = None
    index_cid: str | None = None
    receipt_cid: str | None = None
    stdout_cid: str | None = None
    stderr_cid: str | None = None
    exit_code: int | None = None
    error: dict[str, str] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    cost_micros: int = 0
    saved_micros: int = 0
    overrun_micros: int = 0               # charged beyond the plan's reservation (a ledger `overrun`)
    source_execution: str | None = None   # for a hit: the execution that produced the result
    started_ms: int = 0
    duration_ms: int = 0
    input_cids: tuple[str, ...] = ()
    remote_url: str | None = None         # a hit fetched from this team cache (cache "hit")
    log_truncated: dict[str, int] | None = None   # stream -> bytes the log bound dropped (limits.log_bytes)

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plain JSON-like values (a copy: changing it changes no record)."""
        d = {name: _copied(getattr(self, name)) for name in _FIELDS}
        d["outputs"] = [o.to_dict() for o in self.outputs]
        d["input_cids"] = list(self.input_cids)
        return d

    def to_stored(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields that hold their default (``from_dict`` restores
        them), cids packed as raw bytes: what the ``executions`` table stores, so a hit's record
        stays under 1 KiB. Built field by field (no intermediate copy): a batch stores thousands
        per second."""
        values = vars(self)
        stored: dict[str, Any] = {}
        for name in _FIELDS:
            value = values[name]
            if name in _REQUIRED or value != _DEFAULTS[name]:
                if name in _CID_FIELDS:
                    stored[name] = _packed_cid(value)
                elif name == "outputs":
                    stored[name] = [{"path": o.path, "cid": _packed_cid(o.cid), "size_bytes": o.size, "mime": o.mime}
                                    for o in value]
                elif name == "input_cids":
                    stored[name] = [_packed_cid(c) for c in value]
                else:
                    stored[name] = value   # packed at once by the caller: no copy needed
        return stored

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecutionRecord:
        known = {f.name for f in fields(cls)}
        kw = {k: _unpacked_cids(v) for k, v in d.items() if k in known}
        d = {**d, **{k: kw[k] for k in ("outputs", "input_cids") if k in kw}}
        kw["outputs"] = tuple(OutputEntry.from_dict(o) for o in d.get("outputs", ()))
        kw["input_cids"] = tuple(d.get("input_cids", ()))
        return cls(**kw)

    @classmethod
    def begun(cls, execution_id: str, ref: str, adapter: str, *, plan: str | None, seed: int,
              started_ms: int) -> ExecutionRecord:
        """The record of a run that just started: status ``error`` until a step says otherwise,
        every other field at its default (as the constructor would make it, without running
        ``__init__``: a batch starts thousands of runs per second)."""
        return built(ExecutionRecord, {**_STARTED, "execution_id": execution_id, "ref": ref, "adapter": adapter,
                                       "status": "error", "plan": plan, "seed": seed, "started_ms": started_ms,
                                       "usage": {}})

    def with_(self, **changes: Any) -> ExecutionRecord:
        """A copy with ``changes`` (as :func:`dataclasses.replace`, without re-running
        ``__init__``: a run replaces its record at every step, a batch at thousands per second)."""
        unknown = changes.keys() - _FIELD_SET
        if unknown:
            raise TypeError(f"ExecutionRecord has no field(s) {sorted(unknown)}")
        return replaced(self, changes)

    def blobs(self) -> list[str]:
        """Every cid the record names."""
        cids = [o.cid for o in self.outputs] + list(self.input_cids)
        cids += [c for c in (self.action_cid, self.manifest_cid, self.index_cid, self.receipt_cid,
                             self.stdout_cid, self.stderr_cid) if c]
        return cids


def _copied(value: Any) -> Any:
    """A deep copy of a JSON-like value (dicts, lists, tuples as lists, scalars)."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copied(v) for v in value]
    return value


def _packed_cid(value: Any) -> Any:
    """A cid as its 32 raw bytes (msgpack bin) instead of 67 characters: a record is mostly
    cids. Anything else (None, a malformed value) is stored as it is; :func:`_unpacked_cids`
    turns every 32-byte value back into its cid, wherever it is in a stored record."""
    if isinstance(value, str) and len(value) == 67 and value.startswith("b3:"):
        try:
            return bytes.fromhex(value[3:])
        except ValueError:
            return value
    return value


def _unpacked_cids(value: Any) -> Any:
    if isinstance(value, bytes) and len(value) == 32:
        return "b3:" + value.hex()
    if isinstance(value, list | tuple):
        return [_unpacked_cids(v) for v in value]
    if isinstance(value, dict):
        return {k: _unpacked_cids(v) for k, v in value.items()}
    return value


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


_FIELDS = tuple(f.name for f in fields(ExecutionRecord))
_CID_FIELDS = frozenset({"memo_key", "action_cid", "spec_digest", "env_fingerprint", "manifest_cid", "index_cid",
                         "receipt_cid", "stdout_cid", "stderr_cid"})
"""The fields that hold one digest each (``b3:`` + 64 hex), stored as raw bytes."""
_FIELD_SET = frozenset(_FIELDS)
_DEFAULTS = {f.name: _default(f) for f in fields(ExecutionRecord)}
_REQUIRED = frozenset(name for name, value in _DEFAULTS.items() if value is MISSING)
_STARTED = {name: value for name, value in _DEFAULTS.items() if value is not MISSING}


def record(db: Database, rec: ExecutionRecord, *, cache_entry: ActionResult | None = None,
           paths: bool = True) -> None:
    """Store ``rec``, (with ``paths``) point the world paths of its outputs at it and (with
    ``cache_entry``) put that action cache entry, all in one transaction."""
    record_many(db, [Recording(rec, cache_entry, paths)])


@dataclass(frozen=True)
class Recording:
    """One record to store with :func:`record_many`, as :func:`record`'s arguments."""

    rec: ExecutionRecord
    cache_entry: ActionResult | None = None
    paths: bool = True


def record_many(db: Database, recordings: list[Recording]) -> None:
    """Store several records (each as :func:`record` would) in one transaction and one sync;
    the maintained :func:`counts` change in the same transaction."""

    def fn(txn: Any) -> None:
        counters = _counters_in(txn, db)
        for r in recordings:
            rec = r.rec
            key = rec.execution_id.encode()
            if counters is not None:
                replaced = txn.get(key, db=db.dbs["executions"])
                if replaced is not None:
                    _count(counters, unpack(bytes(replaced)), -1)
                _count(counters, {"status": rec.status, "cache": rec.cache, "cost_micros": rec.cost_micros,
                                  "saved_micros": rec.saved_micros}, +1)
            txn.put(key, pack(rec.to_stored()), db=db.dbs["executions"])
            if r.paths and rec.status == "success":
                for o in rec.outputs:
                    value = {"cid": o.cid, "size": o.size, "mime": o.mime, "execution_id": rec.execution_id}
                    txn.put(o.path.encode(), pack(value), db=db.dbs["paths"])
            if r.cache_entry is not None:
                action_cache.put_in(txn, db, r.cache_entry)
        if counters is not None:
            txn.put(_COUNTERS_KEY, pack(counters), db=db.dbs["counters"])

    if recordings:
        db.write(fn)


_COUNTERS_KEY = b"executions"
_COUNTER_NAMES = ("total", "hits", "misses", "bypassed", "failures", "spent_micros", "saved_micros")


def _counters_in(txn: Any, db: Database) -> dict[str, int] | None:
    """The maintained counters, or None while they are unknown (a home they were never computed
    for: :func:`counts` computes them on first use; until then writers leave them absent)."""
    raw = txn.get(_COUNTERS_KEY, db=db.dbs["counters"])
    if raw is None:
        return None
    value = unpack(bytes(raw))
    return {name: int(value.get(name, 0)) for name in _COUNTER_NAMES} if isinstance(value, dict) else None


def _count(counters: dict[str, int], stored: dict[str, Any], sign: int) -> None:
    """Add (``sign`` +1) or take away (-1) one record, given as stored or as its fields."""
    counters["total"] += sign
    if stored.get("status") != "success":
        counters["failures"] += sign
    elif stored.get("cache") == "hit":
        counters["hits"] += sign
    elif stored.get("cache") == "bypass":
        counters["bypassed"] += sign
    else:
        counters["misses"] += sign
    counters["spent_micros"] += sign * int(stored.get("cost_micros") or 0)
    counters["saved_micros"] += sign * int(stored.get("saved_micros") or 0)


def counts(db: Database) -> Counts:
    """How many records there are by outcome, and the money they spent and saved: read from the
    maintained counters. They are computed by one scan, in a write transaction (so no record
    lands meanwhile), when they are absent, when their total disagrees with the number of
    records (a home that a theoryx without counters wrote to since), or when the outcomes do not
    add up to the total (one without the ``bypassed`` counter wrote to it since)."""
    from theoryx.store.listing import Counts

    def read(txn: Any) -> dict[str, int] | None:
        counters = _counters_in(txn, db)
        entries = int(txn.stat(db.dbs["executions"])["entries"])
        if counters is None or counters["total"] != entries:
            return None
        parts = counters["hits"] + counters["misses"] + counters["bypassed"] + counters["failures"]
        return counters if parts == counters["total"] else None

    def recount(txn: Any) -> dict[str, int]:
        counters = dict.fromkeys(_COUNTER_NAMES, 0)
        for _, raw in txn.cursor(db=db.dbs["executions"]):
            _count(counters, unpack(bytes(raw)), +1)
        txn.put(_COUNTERS_KEY, pack(counters), db=db.dbs["counters"])
        return counters

    counters = db.read(read)
    if counters is None:
        counters = db.write(recount)
    return Counts(**counters)


def get(db: Database, execution_id: str) -> ExecutionRecord:
    """The record, or :class:`NotFound`. A unique prefix of an id is accepted, in either case
    (ids are lowercase Crockford base32, which is case-insensitive)."""
    raw = db.get("executions", execution_id)
    if raw is None and execution_id != execution_id.lower():
        return get(db, execution_id.lower())
    if raw is None:
        # two are enough to call a prefix ambiguous (a 6-character one spans ~4 minutes of ids)
        matches = [v for _, v in db.items("executions", prefix=execution_id, limit=2)] \
            if len(execution_id) >= 6 else []
        if len(matches) != 1:
            hint = " (ambiguous prefix)" if len(matches) > 1 else ""
            raise NotFound(f"no execution {execution_id!r}{hint}; see `theoryx ls`")
        raw = matches[0]
    return ExecutionRecord.from_dict(raw)


LATEST_PAGE = 64
"""Records :func:`latest` reads per transaction."""


def latest(db: Database) -> Iterator[ExecutionRecord]:
    """Every record, newest first, read :data:`LATEST_PAGE` at a time (:func:`page`): a caller
    that stops early (``theoryx ls --limit N``) has read what it used plus at most one page, never
    the whole table. Each page is its own read transaction."""
    before: str | None = None
    while True:
        chunk = page(db, before=before, limit=LATEST_PAGE)
        yield from chunk.records
        if chunk.next_before is None:
            return
        before = chunk.next_before


def page(db: Database, *, before: str | None = None, limit: int = 50,
         match: Callable[[ExecutionRecord], bool] | None = None, scan_budget: int = 10_000) -> Page:
    """Up to ``limit`` records whose ids sort below ``before`` (None: from the newest), newest
    first, that ``match`` accepts (every record without it).

    One read transaction and one cursor walking back from ``before``: the cost is the records
    read, never the table's size. Without ``match`` that is at most ``limit`` records; with it, at
    most ``max(limit, scan_budget)``, so a filter that matches rarely returns a short (even empty)
    page rather than walking the whole table. ``next_before`` continues the walk where it stopped
    (the last id read, matching or not); it is None when no older record exists.
    """
    from theoryx.store.listing import Page  # listing values stay off the hit path

    budget = limit if match is None else max(limit, scan_budget)

    def walk(txn: lmdb.Transaction) -> Page:
        cur = txn.cursor(db=db.dbs["executions"])
        if before is None:
            ok = cur.last()
        else:
            ok = cur.prev() if cur.set_range(before.encode()) else cur.last()
        out: list[ExecutionRecord] = []
        scanned, last = 0, None
        while ok and scanned < budget and len(out) < limit:
            last = bytes(cur.key())
            rec = ExecutionRecord.from_dict(unpack(bytes(cur.value())))
            scanned += 1
            if match is None or match(rec):
                out.append(rec)
            ok = cur.prev()   # also tells, once the page is full, whether an older record exists
        return Page(tuple(out), last.decode() if ok and last is not None else None, scanned)

    return db.read(walk)


def count(db: Database) -> int:
    """How many execution records the table holds (LMDB's count: no record is read)."""
    return db.count("executions")


def find(db: Database, execution_id: str) -> ExecutionRecord | None:
    """The record with exactly this id, or None (no prefix matching, unlike :func:`get`)."""
    raw = db.get("executions", execution_id)
    return None if raw is None else ExecutionRecord.from_dict(raw)


def records(db: Database) -> Iterator[ExecutionRecord]:
    """Every record, oldest first (all read in one transaction when iteration starts)."""
    for _, raw in db.items("executions"):
        yield ExecutionRecord.from_dict(raw)


def records_in(txn: lmdb.Transaction, db: Database) -> Iterator[tuple[str, ExecutionRecord]]:
    """``(execution id, record)`` of every record, read in the caller's transaction ``txn``."""
    for key, raw in txn.cursor(db=db.dbs["executions"]):
        yield bytes(key).decode(), ExecutionRecord.from_dict(unpack(bytes(raw)))


def drop_in(txn: lmdb.Transaction, db: Database, execution_id: str) -> bool:
    """Inside the caller's write transaction ``txn``: delete the record and every world path that
    still points at it (a path a newer execution took over stays). False if there was no record."""
    key = execution_id.encode()
    raw = txn.get(key, db=db.dbs["executions"])
    if raw is None:
        return False
    txn.delete(key, db=db.dbs["executions"])
    counters = _counters_in(txn, db)
    if counters is not None:
        _count(counters, unpack(bytes(raw)), -1)
        txn.put(_COUNTERS_KEY, pack(counters), db=db.dbs["counters"])
    for out in unpack(bytes(raw)).get("outputs") or ():
        path = str(out.get("path", "")).encode()
        held = txn.get(path, db=db.dbs["paths"]) if path else None
        if held is not None and unpack(bytes(held)).get("execution_id") == execution_id:
            txn.delete(path, db=db.dbs["paths"])
    return True


def world_path(db: Database, path: str) -> PathEntry | None:
    """What the world path ``path`` resolves to, or None if no execution produced it."""
    from theoryx.store.listing import PathEntry

    value = db.get("paths", path)
    return None if value is None else PathEntry.from_value(path, value)


def world_paths(db: Database) -> Iterator[PathEntry]:
    """Every world path in path order; values that are not maps (damage) are skipped."""
    from theoryx.store.listing import PathEntry

    for path, value in db.items("paths"):
        if isinstance(value, dict):
            yield PathEntry.from_value(path, value)
