"""Read models for :mod:`theoryx.ui`: what each page shows, read from the store through the
tables' owner modules (``theoryx.store.executions``, ``theoryx.budget.plans`` and ``ledger``,
``theoryx.store.pins``...), never from the tables themselves.

Contracts:

- nothing here writes to the database or the CAS (reading a blob hashes it; the CAS quarantines
  one whose bytes do not match, as every read does);
- lists of executions are read a page at a time with a cursor in the database
  (:func:`theoryx.store.executions.page`), so a page costs its length, not the home's size; a
  filter walks at most :data:`SCAN_BUDGET` records per page;
- figures that need a whole table or ledger (a plan's chart and its verification, the hit rate
  over time) are computed once per state of their source and kept in a :class:`Memo` (keyed by
  the ledger's head hash, or by the newest execution and the count);
- blob bytes are shown only after they were hashed: small blobs are read whole
  (:meth:`cas.Store.read`), larger ones checked first (:meth:`cas.Store.check`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeVar

from cas import BlobNotFound, CasError, CorruptBlob
from theoryx.budget import ledger, plans
from theoryx.budget.plans import Plan
from theoryx.core.ids import is_execution_id, timestamp_ms
from theoryx.errors import LedgerCorrupt, NotFound, TheoryxError
from theoryx.provenance import audit_records, explain
from theoryx.provenance.audit_records import AuditRecord
from theoryx.store import action_cache, executions, pins, receipts, stats
from theoryx.store.action_cache import OutputEntry
from theoryx.store.executions import ExecutionRecord
from theoryx.store.gc import last
from theoryx.store.gc.last import LastGc
from theoryx.store.handle import Stores
from theoryx.store.leases import is_held
from theoryx.store.pins import Pin
from theoryx.store.stats import Usage

T = TypeVar("T")

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
SCAN_BUDGET = 2_000
"""Records a filtered runs page reads at most; the page then links on from where it stopped."""
PREVIEW_BYTES = 256 << 10
"""Text and JSON outputs up to this size are shown whole; larger ones show their head."""
HEAD_BYTES = 64 << 10
"""What is shown of a larger text: its first (and, for logs, last) this many bytes."""
IMAGE_BYTES = 20 << 20
"""Images up to this size are shown inline; larger ones are links."""
HIT_RATE_WINDOW = 10_000
"""The hit rate over time covers at most the newest this many executions."""
IN_FLIGHT_SHOWN = 50
PINS_SHOWN = 100
COMPARE_CANDIDATES = 20
LEDGER_PAGE = 50
IMAGE_MIMES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Shown inline. Not SVG: an SVG can carry script."""
TEXT_SUFFIXES = frozenset({".txt", ".md", ".csv", ".tsv", ".log", ".yaml", ".yml", ".xml", ".html", ".py", ".jsonl"})
JSON_SUFFIXES = frozenset({".json"})
ADAPTERS = ("mock", "local", "modal")
STATUSES = ("success", "error")
CACHES = ("hit", "miss", "bypass", "none")


class Memo:
    """A small thread-safe memo (least recently used out first): figures computed once per state
    of their source, which is part of the key."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[no-any-return]
        value = compute()   # outside the lock: two threads may compute the same value once each
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


# -- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilter:
    """The Runs page's filters; None matches everything. ``cache="none"`` is a run that failed
    before its cache lookup."""

    ref: str | None = None
    plan: str | None = None
    adapter: str | None = None
    status: str | None = None
    cache: str | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in self.query().values())

    def matches(self, rec: ExecutionRecord) -> bool:
        if self.ref is not None and rec.ref != self.ref:
            return False
        if self.plan is not None and rec.plan != self.plan:
            return False
        if self.adapter is not None and rec.adapter != self.adapter:
            return False
        if self.status is not None and rec.status != self.status:
            return False
        return self.cache is None or (rec.cache or "none") == self.cache

    def query(self) -> dict[str, str | None]:
        return {"ref": self.ref, "plan": self.plan, "adapter": self.adapter, "status": self.status,
                "cache": self.cache}


@dataclass(frozen=True)
class RunsPage:
    """One page of the Runs list, newest first."""

    records: tuple[ExecutionRecord, ...]
    next_before: str | None
    scanned: int
    total: int
    filter: RunFilter
    before: str | None
    limit: int


def runs_page(stores: Stores, flt: RunFilter, *, before: str | None = None, limit: int = PAGE_SIZE,
              scan_budget: int = SCAN_BUDGET) -> RunsPage:
    """The executions below ``before`` (an id; None = the newest) that ``flt`` matches."""
    got = executions.page(stores.db, before=before, limit=limit,
                          match=flt.matches if flt.active else None, scan_budget=scan_budget)
    return RunsPage(got.records, got.next_before, got.scanned, executions.count(stores.db), flt, before, limit)


@dataclass(frozen=True)
class InFlight:
    """A run holding its lease right now (it has no record until it finishes)."""

    execution_id: str
    started_ms: int


def in_flight(stores: Stores, limit: int = IN_FLIGHT_SHOWN) -> tuple[InFlight, ...]:
    """Runs in flight, newest first: lease files ``<execution id>.lease`` a live process holds."""
    try:
        names = sorted((p for p in stores.home.leases.glob("*.lease")), reverse=True)
    except OSError:
        return ()
    out = []
    for path in names:
        eid = path.name[: -len(".lease")]
        if is_execution_id(eid) and is_held(path):
            out.append(InFlight(eid, timestamp_ms(eid)))
            if len(out) >= limit:
                break
    return tuple(out)


@dataclass(frozen=True)
class Head:
    """What the live script compares: the newest record and how many records and runs in flight."""

    newest: str | None
    total: int
    in_flight: int

    def to_dict(self) -> dict[str, Any]:
        return {"newest": self.newest, "total": self.total, "in_flight": self.in_flight}


def head(stores: Stores) -> Head:
    newest = executions.page(stores.db, limit=1).records
    return Head(newest[0].execution_id if newest else None, executions.count(stores.db), len(in_flight(stores)))


# -- one run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """How a blob is shown: ``kind`` is ``text``, ``json``, ``image``, ``download``, ``missing``
    (named but not in the store), ``corrupt`` or ``absent`` (nothing was recorded); ``text`` is
    what is shown for text and JSON; ``note`` says what was cut or why there is no preview."""

    kind: str
    text: str = ""
    note: str = ""


@dataclass(frozen=True)
class OutputView:
    """An output, its path below the write prefix (its URL) and its preview."""

    entry: OutputEntry
    rel: str
    preview: Preview


@dataclass(frozen=True)
class Attachment:
    """An attachment named by the inputs: where (JSON pointer), its file name, cid, mime, size."""

    pointer: str
    name: str
    cid: str
    mime: str
    size: int | None


@dataclass(frozen=True)
class Loaded:
    """A small JSON blob (receipt, action pre-image): its value, or why it could not be read."""

    value: Any = None
    note: str = ""


@dataclass(frozen=True)
class RunDetail:
    """Everything the run page shows."""

    record: ExecutionRecord
    source: ExecutionRecord | None
    action: Loaded
    receipt: Loaded
    attachments: tuple[Attachment, ...]
    outputs: tuple[OutputView, ...]
    logs: tuple[tuple[str, str | None, Preview], ...]   # (stream, cid, preview)
    pinned: bool
    audits: tuple[AuditRecord, ...]
    candidates: tuple[ExecutionRecord, ...]              # newest runs of the same ref, to compare with
    files: dict[str, str] = field(default_factory=dict)  # file name -> cid (receipt, index, logs, action)


def record(stores: Stores, execution_id: str) -> ExecutionRecord:
    """The record with exactly this id; :class:`NotFound` otherwise (no prefix matching)."""
    rec = executions.find(stores.db, execution_id)
    if rec is None:
        raise NotFound(f"no execution {execution_id}")
    return rec


def rel_path(rec: ExecutionRecord, entry: OutputEntry) -> str:
    """An output's path below the record's write prefix (its whole world path, less the leading
    slash, if it is not below it)."""
    prefix = rec.write_prefix or ""
    return entry.path[len(prefix):] if prefix and entry.path.startswith(prefix) else entry.path.lstrip("/")


def output(rec: ExecutionRecord, rel: str) -> OutputEntry:
    """The output at ``rel`` below the write prefix; :class:`NotFound` if the run has none there."""
    for entry in rec.outputs:
        if rel_path(rec, entry) == rel:
            return entry
    raise NotFound(f"execution {rec.execution_id} has no output {rel}")


def execution_file(rec: ExecutionRecord, name: str) -> str:
    """The cid of the execution's file ``name`` (``determinism.json``, ``stdout.log``...). A hit's
    receipt and index are derived from its record and may not be stored: see :func:`derived_file`."""
    for path, cid in receipts.execution_files(rec).items():   # never writes: no CAS is passed
        if path.rsplit("/", 1)[1] == name:
            return cid
    raise NotFound(f"execution {rec.execution_id} has no file {name}")


def derived_file(rec: ExecutionRecord, name: str) -> bytes | None:
    """The bytes of a hit's derived receipt or index (``receipts.derived``): computed from the
    record, as ``theoryx cat`` would store them, without writing anything. None otherwise."""
    if not receipts.derived(rec):
        return None
    if name == "determinism.json":
        return receipts.receipt_bytes(rec)
    if name == "outputs.json":
        return receipts.index_bytes(rec)
    return None


def input_blob(stores: Stores, rec: ExecutionRecord, cid: str) -> Attachment:
    """The attachment ``cid`` of ``rec``; :class:`NotFound` if the run's inputs name no such blob."""
    for att in attachments(load_json(stores, rec.action_cid).value):
        if att.cid == cid:
            return att
    if cid in rec.input_cids:
        return Attachment("", cid.removeprefix("b3:")[:16], cid, "application/octet-stream", None)
    raise NotFound(f"execution {rec.execution_id} has no input {cid}")


def load_json(stores: Stores, cid: str | None, limit: int = 16 << 20) -> Loaded:
    """A small JSON blob, hashed before it is parsed."""
    if not cid:
        return Loaded(note="not recorded")
    blob = stores.cas.stat(cid)
    if blob is None:
        return Loaded(note=f"{cid} is not in the store (removed by gc?)")
    if blob.size > limit:
        return Loaded(note=f"{cid} is larger than {limit} bytes")
    try:
        return Loaded(json.loads(stores.cas.read(cid)))
    except BlobNotFound:
        return Loaded(note=f"{cid} is not in the store (removed by gc?)")
    except CorruptBlob:
        return Loaded(note=f"{cid} is corrupt (quarantined; `theoryx verify --repair`)")
    except (CasError, ValueError) as exc:
        return Loaded(note=f"{cid} could not be read: {exc}")


def attachments(inputs_or_action: Any) -> tuple[Attachment, ...]:
    """The ``{"$artifact", "cid", ...}`` objects in an action's inputs, with their JSON pointers."""
    root = inputs_or_action.get("inputs") if isinstance(inputs_or_action, dict) else None
    found: list[Attachment] = []

    def walk(value: Any, pointer: str, depth: int) -> None:
        if depth > 100:   # inputs deeper than this are refused when a run is prepared
            return
        if isinstance(value, dict):
            if isinstance(value.get("$artifact"), str) and isinstance(value.get("cid"), str):
                size = value.get("size")
                found.append(Attachment(pointer or "/", PurePosixPath(value["$artifact"]).name, value["cid"],
                                        str(value.get("mime") or "application/octet-stream"),
                                        size if isinstance(size, int) else None))
                return
            for k, v in value.items():
                walk(v, f"{pointer}/{str(k).replace('~', '~0').replace('/', '~1')}", depth + 1)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{pointer}/{i}", depth + 1)

    walk(root, "", 0)
    return tuple(found)


def _kind(path: str, mime: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    base = mime.split(";", 1)[0].strip().lower()
    if base in IMAGE_MIMES:
        return "image"
    if base == "application/json" or base.endswith("+json") or suffix in JSON_SUFFIXES:
        return "json"
    if base.startswith("text/") or suffix in TEXT_SUFFIXES:
        return "text"
    return "download"


def preview(stores: Stores, cid: str, path: str, mime: str, *, tail: bool = False) -> Preview:
    """How to show blob ``cid`` (named ``path``, of type ``mime``): hashed before anything is
    shown. ``tail``: a text too large to show whole shows its last bytes too (logs)."""
    blob = stores.cas.stat(cid)
    if blob is None:
        return Preview("missing", note="not in the store (removed by gc?)")
    kind = _kind(path, mime)
    if kind == "image":
        return Preview("image") if blob.size <= IMAGE_BYTES else Preview("download", note="too large to show")
    if kind == "download":
        return Preview("download")
    try:
        if blob.size <= PREVIEW_BYTES:
            data, note = stores.cas.read(cid), ""
        else:
            stores.cas.check(cid)   # hashed whole before a byte of it is shown
            with stores.cas.open(cid) as f:
                data = f.read(HEAD_BYTES)
                if tail:
                    f.seek(max(blob.size - HEAD_BYTES, HEAD_BYTES))
                    end = f.read(HEAD_BYTES)
                    data += f"\n[... {blob.size - len(data) - len(end)} bytes not shown ...]\n".encode() + end
            note = (f"the first and last {HEAD_BYTES >> 10} KiB of {blob.size} bytes" if tail
                    else f"the first {HEAD_BYTES >> 10} KiB of {blob.size} bytes")
    except BlobNotFound:
        return Preview("missing", note="not in the store (removed by gc?)")
    except CorruptBlob:
        return Preview("corrupt", note="its bytes do not match its cid: quarantined; run `theoryx verify --repair`")
    if kind == "json" and not note:
        try:
            return Preview("json", json.dumps(json.loads(data), indent=2, ensure_ascii=False))
        except ValueError:
            note = "not valid JSON; shown as text"
        except RecursionError:   # valid JSON nested deeper than the parser's recursion limit
            note = "nested too deeply to pretty-print; shown as text"
    try:   # a cut may split a character: only a whole text must be valid UTF-8
        text = data.decode("utf-8", "replace" if blob.size > PREVIEW_BYTES else "strict")
    except UnicodeDecodeError:
        return Preview("download", note="not UTF-8 text")
    return Preview("text", text, note)


def run_detail(stores: Stores, execution_id: str) -> RunDetail:
    """The run page's model; :class:`NotFound` for an unknown id."""
    rec = record(stores, execution_id)
    db = stores.db
    source = executions.find(db, rec.source_execution) if rec.source_execution else None
    action = load_json(stores, rec.action_cid)
    outputs = tuple(OutputView(o, rel_path(rec, o), preview(stores, o.cid, o.path, o.mime)) for o in rec.outputs)
    logs = tuple((name, cid, preview(stores, cid, f"{name}.log", "text/plain", tail=True)
                  if cid else Preview("absent", note="nothing captured"))
                 for name, cid in (("stdout", rec.stdout_cid), ("stderr", rec.stderr_cid)))
    same = executions.page(db, limit=COMPARE_CANDIDATES + 1, scan_budget=2_000,
                           match=lambda r: r.ref == rec.ref and r.execution_id != rec.execution_id
                           and r.action_cid is not None)
    files = {p.rsplit("/", 1)[1]: c for p, c in receipts.execution_files(rec).items()}
    derived = derived_file(rec, "determinism.json")
    receipt = Loaded(json.loads(derived)) if derived is not None else load_json(stores, rec.receipt_cid)
    return RunDetail(
        rec, source, action, receipt, attachments(action.value), outputs, logs,
        rec.execution_id in pins.pinned_ids(db), tuple(audit_records.for_execution(db, rec.execution_id)),
        same.records[:COMPARE_CANDIDATES], files)


@dataclass(frozen=True)
class Comparison:
    """``theoryx explain``'s answer for two runs, and both records."""

    a: ExecutionRecord
    b: ExecutionRecord
    explanation: explain.Explanation | None
    problem: str = ""


def compare(stores: Stores, a: str, b: str) -> Comparison:
    """Why runs ``a`` and ``b`` have different memo keys (:func:`theoryx.provenance.explain.explain`);
    :class:`NotFound` for an unknown id; a run without a stored action gives ``problem``."""
    ra, rb = record(stores, a), record(stores, b)
    try:
        return Comparison(ra, rb, explain.explain(stores, ra.execution_id, rb.execution_id))
    except TheoryxError as exc:   # a run that failed before its key, a pre-image gc removed
        return Comparison(ra, rb, None, exc.message)


# -- plans --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerStatus:
    """Whether a plan's ledger replays to its totals (:func:`theoryx.budget.plans.verify`)."""

    ok: bool
    text: str


@dataclass(frozen=True)
class PlanRow:
    plan: Plan
    status: LedgerStatus


def ledger_status(stores: Stores, memo: Memo, plan: Plan) -> LedgerStatus:
    """The plan's verification, recomputed only when its ledger's head moved."""

    def compute() -> LedgerStatus:
        try:
            totals = plans.verify(stores.db, plan.key)
        except LedgerCorrupt as exc:
            return LedgerStatus(False, exc.message)
        except NotFound as exc:
            return LedgerStatus(False, exc.message)
        return LedgerStatus(True, f"verified: {totals.events} events chained up to {totals.head}")

    return memo.get(("verify", plan.key, plan.totals.events, plan.totals.head, plan.totals.reserved_micros), compute)


def plan_rows(stores: Stores, memo: Memo) -> tuple[PlanRow, ...]:
    return tuple(PlanRow(p, ledger_status(stores, memo, p)) for p in plans.all_plans(stores.db))


@dataclass(frozen=True)
class PlanDetail:
    plan: Plan
    status: LedgerStatus
    spent: tuple[tuple[int, float], ...]
    saved: tuple[tuple[int, float], ...]
    events: tuple[dict[str, Any], ...]   # this page of the ledger, newest first
    page: int
    pages: int


def plan_detail(stores: Stores, memo: Memo, key: str, page: int) -> PlanDetail:
    """The plan page: totals, spend and savings over time (cumulative, from every ledger event),
    its verification, and page ``page`` (1 = newest) of its ledger. :class:`NotFound` for an
    unknown plan or a page past the last."""
    plan = plans.get(stores.db, key)
    total = plan.totals.events
    pages = max(1, -(-total // LEDGER_PAGE))
    if page > pages:
        raise NotFound(f"the ledger of plan {key} has {pages} page(s) of {LEDGER_PAGE} events; there is no page {page}")
    stop = total - (page - 1) * LEDGER_PAGE
    events = ledger.events_between(stores.db, key, max(0, stop - LEDGER_PAGE), stop)

    def series() -> tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]:
        spent: list[tuple[int, float]] = []
        saved: list[tuple[int, float]] = []

        def walk(txn: Any) -> None:
            s = v = 0
            for _, event in ledger.events(stores.db, key, txn):
                at = int(event.get("at_ms", 0))
                if event.get("kind") in ("settle", "overrun"):
                    s += int(event.get("amount_micros", 0))
                    spent.append((at, float(s)))
                elif event.get("kind") == "hit":
                    v += int(event.get("saved_micros", 0))
                    saved.append((at, float(v)))

        stores.db.read(walk)
        return tuple(spent), tuple(saved)

    spent, saved = memo.get(("series", key, total, plan.totals.head), series)
    return PlanDetail(plan, ledger_status(stores, memo, plan), spent, saved, tuple(reversed(events)), page, pages)


# -- the store ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HitBucket:
    start_ms: int
    end_ms: int
    hits: int
    misses: int
    failures: int


@dataclass(frozen=True)
class HitRate:
    """Hits and misses over the newest :data:`HIT_RATE_WINDOW` executions, and by time."""

    window: int
    hits: int
    misses: int
    failures: int
    saved_micros: int
    spent_micros: int
    buckets: tuple[HitBucket, ...]

    @property
    def rate(self) -> float | None:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else None


BUCKETS_MS = (60_000, 300_000, 900_000, 3_600_000, 21_600_000, 86_400_000, 604_800_000, 2_592_000_000)
MAX_BUCKETS = 48


def hit_rate(stores: Stores, memo: Memo, window: int = HIT_RATE_WINDOW) -> HitRate:
    """Recomputed only when the newest execution or the count changed."""
    now = head(stores)

    def compute() -> HitRate:
        rows: list[tuple[int, str, str | None]] = []
        hits = misses = failures = saved = spent = 0
        before: str | None = None
        while len(rows) < window:
            chunk = executions.page(stores.db, before=before, limit=min(1000, window - len(rows)))
            for r in chunk.records:
                rows.append((r.started_ms or timestamp_ms(r.execution_id), r.status, r.cache))
                saved += int(r.saved_micros or 0)
                spent += int(r.cost_micros or 0)
            if chunk.next_before is None:
                break
            before = chunk.next_before
        if not rows:
            return HitRate(0, 0, 0, 0, 0, 0, ())
        t0, t1 = min(t for t, _, _ in rows), max(t for t, _, _ in rows)
        size = next((b for b in BUCKETS_MS if (t1 - t0) // b < MAX_BUCKETS), BUCKETS_MS[-1])
        start = t0 - t0 % size
        counts: dict[int, list[int]] = {}
        for t, status, cache in rows:
            if status == "success" and cache == "bypass":     # never looked the cache up: no part of the rate
                continue
            c = counts.setdefault((t - start) // size, [0, 0, 0])
            if status != "success":
                c[2] += 1
                failures += 1
            elif cache == "hit":
                c[0] += 1
                hits += 1
            else:
                c[1] += 1
                misses += 1
        buckets = tuple(HitBucket(start + i * size, start + (i + 1) * size, *counts[i]) for i in sorted(counts))
        return HitRate(len(rows), hits, misses, failures, saved, spent, buckets)

    return memo.get(("hit-rate", now.newest, now.total, window), compute)


@dataclass(frozen=True)
class StoreView:
    usage: Usage
    cache_entries: int
    executions: int
    pins: int
    pinned: tuple[tuple[Pin, ExecutionRecord | None], ...]
    hit_rate: HitRate
    last_gc: LastGc | None
    in_flight: tuple[InFlight, ...]
    home: str


USAGE_TTL_S = 10.0
"""The disk walk behind the store's size is repeated at most this often."""


def store_view(stores: Stores, memo: Memo) -> StoreView:
    db = stores.db
    usage = memo.get(("usage", int(time.monotonic() // USAGE_TTL_S)), lambda: stats.usage(stores))
    pinned = tuple((p, executions.find(db, p.execution_id)) for p in pins.pins(db)[-PINS_SHOWN:][::-1])
    return StoreView(usage, action_cache.count(db), executions.count(db), pins.count(db), pinned,
                     hit_rate(stores, memo), last.read(stores.home.root), in_flight(stores), str(stores.home.root))
