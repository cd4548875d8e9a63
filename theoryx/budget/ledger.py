"""A plan's ledger: append-only events in the ``ledger`` database, chained by BLAKE3.

Key: ``<plan>/<seq:012d>`` (plan keys never contain ``/``). Value: one event, a flat map::

    {"v": 1, "plan": "team-a", "seq": 3, "kind": "settle", "at_ms": ..., "execution_id": ...,
     "amount_micros": 212, "released_micros": 9860, "prev": "b3:...", "hash": "b3:..."}

``hash`` = ``b3:`` + BLAKE3(RFC 8785 of the event without ``hash``); ``prev`` is the previous
event's hash (:func:`genesis` for the first). Kinds and what they add to the :class:`Totals`:

=============  ===========================================================================
``create``     ``limit_micros`` (int or null) becomes the limit
``set-limit``  ``limit_micros`` becomes the limit (``previous_micros`` is the old one)
``reserve``    ``amount_micros`` (the worst-case estimate) is reserved; one execution more
``settle``     ``released_micros`` leaves the reservation, ``amount_micros`` is spent
               (at most ``released_micros``; ``refused`` says why the processor's reported
               cost was refused, when it was, and the reservation is then what is charged)
``overrun``    ``amount_micros`` is spent beyond the reservation of the execution just
               settled (it follows that ``settle`` in the same transaction), one overrun more;
               ``cost_micros`` = the settle's ``amount_micros`` + this ``amount_micros``,
               ``reserved_micros`` = the settle's ``released_micros``
``release``    ``amount_micros`` leaves the reservation, nothing is spent (owner gone)
``hit``        one cache hit more; ``saved_micros`` (the producer's cost) is saved
=============  ===========================================================================

Ledgers written before ``overrun`` existed may hold a ``settle`` that spent more than it
released (the charge above the reservation was silent then); they still verify.

The plan record (``plans`` database) stores the running :class:`Totals` including the event count
and the head hash, updated in the same write transaction as each append: a removed last event
or an edited total is detected by comparing them with the events (:func:`verify`). Like any hash
chain kept next to its head, this detects accidents and naive edits, not a writer who rewrites
every hash and the head.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeGuard

from theoryx.core.canonical import canonical_digest
from theoryx.errors import LedgerCorrupt
from theoryx.store.db import Database, pack, unpack

VERSION = 1
KINDS = ("create", "set-limit", "reserve", "settle", "release", "hit", "overrun")
# The fields each kind of event must carry (:func:`replay` refuses an event without them).
FIELDS = {"create": ("limit_micros",), "set-limit": ("limit_micros",),
          "reserve": ("execution_id", "amount_micros"),
          "settle": ("execution_id", "amount_micros", "released_micros"),
          "release": ("execution_id", "amount_micros"), "hit": ("execution_id", "saved_micros"),
          "overrun": ("execution_id", "amount_micros", "cost_micros", "reserved_micros")}


def genesis(plan: str) -> str:
    """The ``prev`` of a plan's first event (binds the chain to the plan's key)."""
    return canonical_digest({"ledger": "theoryx-plan", "v": VERSION, "plan": plan})


def event_key(plan: str, seq: int) -> str:
    return f"{plan}/{seq:012d}"


def event_hash(event: dict[str, Any]) -> str:
    return canonical_digest({k: v for k, v in event.items() if k != "hash"})


@dataclass(frozen=True)
class Totals:
    """What a plan's events add up to (money in micro-USD; ``limit_micros`` None = no limit)."""

    limit_micros: int | None = None
    spent_micros: int = 0
    reserved_micros: int = 0
    executions: int = 0
    hits: int = 0
    saved_micros: int = 0
    events: int = 0
    head: str | None = None
    overruns: int = 0                  # executions charged beyond their reservation
    overrun_micros: int = 0            # what they were charged beyond it (part of spent_micros)

    def apply(self, event: dict[str, Any]) -> Totals:
        """The totals after ``event`` (which must already carry its hash)."""
        kind = event["kind"]
        t = replace(self, events=self.events + 1, head=event["hash"])
        if kind in ("create", "set-limit"):
            return replace(t, limit_micros=event["limit_micros"])
        if kind == "reserve":
            return replace(t, reserved_micros=t.reserved_micros + event["amount_micros"],
                           executions=t.executions + 1)
        if kind == "settle":
            return replace(t, reserved_micros=t.reserved_micros - event["released_micros"],
                           spent_micros=t.spent_micros + event["amount_micros"])
        if kind == "release":
            return replace(t, reserved_micros=t.reserved_micros - event["amount_micros"])
        if kind == "hit":
            return replace(t, hits=t.hits + 1, saved_micros=t.saved_micros + event["saved_micros"])
        if kind == "overrun":
            return replace(t, spent_micros=t.spent_micros + event["amount_micros"], overruns=t.overruns + 1,
                           overrun_micros=t.overrun_micros + event["amount_micros"])
        raise LedgerCorrupt(f"ledger of plan {event.get('plan')!r}: unknown event kind {kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Totals:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def append(db: Database, txn: Any, plan: str, totals: Totals, kind: str, at_ms: int,
           **fields: Any) -> tuple[dict[str, Any], Totals]:
    """Append one event inside the caller's write transaction ``txn``; returns the event and the
    new totals (which the caller stores in the plan record in the same transaction)."""
    assert kind in KINDS, kind
    event: dict[str, Any] = {"v": VERSION, "plan": plan, "seq": totals.events, "kind": kind,
                             "at_ms": at_ms, **fields, "prev": totals.head or genesis(plan)}
    event["hash"] = event_hash(event)
    if not txn.put(event_key(plan, totals.events).encode(), pack(event), db=db.dbs["ledger"],
                   overwrite=False):
        raise LedgerCorrupt(f"ledger of plan {plan!r}: event {totals.events} already exists "
                            "(the plan record's event count is behind its ledger)")
    return event, totals.apply(event)


def events(db: Database, plan: str, txn: Any = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(key, event)`` of ``plan`` in ledger order (inside ``txn`` when given); an event that
    does not decode to a JSON object is :class:`LedgerCorrupt` naming it."""
    if txn is None:
        yield from db.read(lambda t: list(events(db, plan, t)))
        return
    prefix = f"{plan}/".encode()
    cur = txn.cursor(db=db.dbs["ledger"])
    ok = cur.set_range(prefix)
    while ok and bytes(cur.key()).startswith(prefix):
        key = bytes(cur.key()).decode("utf-8", "replace")
        yield key, _decoded(key, cur.value())
        ok = cur.next()


def _decoded(key: str, raw: bytes) -> dict[str, Any]:
    """The event stored as ``raw``: a map of text keys to JSON values (what :func:`append`
    writes); :class:`LedgerCorrupt` for anything else (bytes that are no msgpack, binary or
    integer keys, NaN), which no reader could show or check."""
    try:
        event = unpack(raw)
    except Exception as exc:        # msgpack's errors: ValueError, ExtraData, FormatError, StackError...
        raise LedgerCorrupt(f"ledger event {key}: cannot be decoded ({type(exc).__name__}); the ledger "
                            "was damaged") from None
    if not isinstance(event, dict) or not _json_value(event):
        raise LedgerCorrupt(f"ledger event {key}: not a JSON object of text keys and JSON values; "
                            "the ledger was damaged")
    return event


def _json_value(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > 20:
        return False
    if isinstance(value, list):
        return all(_json_value(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_value(v, depth + 1) for k, v in value.items())
    return False


def events_between(db: Database, plan: str, start: int, stop: int) -> list[dict[str, Any]]:
    """The events of ``plan`` with ``start <= seq < stop``, in ledger order: one read transaction
    and one cursor seek to ``start`` (the keys order by seq), so reading a page costs its length,
    not the ledger's."""
    first, end = event_key(plan, max(start, 0)).encode(), event_key(plan, max(stop, 0)).encode()

    def fn(txn: Any) -> list[dict[str, Any]]:
        cur = txn.cursor(db=db.dbs["ledger"])
        out: list[dict[str, Any]] = []
        ok = cur.set_range(first)
        while ok and bytes(cur.key()) < end:
            out.append(_decoded(bytes(cur.key()).decode("utf-8", "replace"), cur.value()))
            ok = cur.next()
        return out

    return db.read(fn)


def replay(plan: str, items: Iterator[tuple[str, dict[str, Any]]]) -> Totals:
    """Check the chain of ``items`` (keys, seqs, prev links, hashes, each kind's fields, matched
    reservations) and return what it adds up to; :class:`LedgerCorrupt` names the first problem."""
    totals = Totals()
    open_reservations: dict[str, int] = {}
    closed: set[str] = set()
    previous: dict[str, Any] = {}
    for key, event in items:
        where = f"ledger of plan {plan!r}, event {totals.events} ({key})"
        if not isinstance(event, dict) or event.get("plan") != plan:
            raise LedgerCorrupt(f"{where}: not an event of this plan")
        if key != event_key(plan, totals.events) or event.get("seq") != totals.events:
            raise LedgerCorrupt(f"{where}: out of sequence (seq {event.get('seq')!r}); "
                                "an event was removed or the events were reordered")
        if event.get("prev") != (totals.head or genesis(plan)):
            raise LedgerCorrupt(f"{where}: does not follow the previous event (prev hash differs); "
                                "an event was removed, inserted or reordered")
        if event.get("hash") != event_hash(event):
            raise LedgerCorrupt(f"{where}: its hash does not match its content; the event was edited")
        if (event.get("kind") == "create") != (totals.events == 0):
            raise LedgerCorrupt(f"{where}: a ledger starts with its one create event")
        _check_fields(where, event)
        _check_money(where, event, open_reservations, closed)
        if event.get("kind") == "overrun":
            _check_overrun(where, event, previous)
        totals = totals.apply(event)
        if totals.reserved_micros < 0:
            raise LedgerCorrupt(f"{where}: releases more than was reserved")
        previous = event
    return totals


def _check_fields(where: str, event: dict[str, Any]) -> None:
    """The event is of a known kind and carries that kind's fields (a limit is an integer or
    null), so that adding it up cannot fail on a missing or mistyped field."""
    kind = event.get("kind")
    if kind not in FIELDS:
        raise LedgerCorrupt(f"{where}: unknown event kind {kind!r}")
    for k in FIELDS[kind]:
        if k not in event:
            raise LedgerCorrupt(f"{where}: a {kind} event without {k}")
    limit = event.get("limit_micros")
    if kind in ("create", "set-limit") and limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise LedgerCorrupt(f"{where}: limit_micros is neither null nor a non-negative integer")


def _amount(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is an integer amount (micro-USD); ``True`` is no amount, though Python
    counts a bool as an int."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_overrun(where: str, event: dict[str, Any], settle: dict[str, Any]) -> None:
    """An overrun follows the settle of the same execution, charges something, and adds up with
    it: ``cost_micros`` = settled + overrun, ``reserved_micros`` = what the settle released."""
    if settle.get("kind") != "settle" or settle.get("execution_id") != event.get("execution_id"):
        raise LedgerCorrupt(f"{where}: an overrun must follow the settle of its execution "
                            f"{event.get('execution_id')}")
    amount, settled, released = (event.get("amount_micros"), settle.get("amount_micros"),
                                 settle.get("released_micros"))
    if not _amount(amount) or amount <= 0 or not _amount(settled) or settled != released:
        raise LedgerCorrupt(f"{where}: an overrun must charge more than a settle that charged its "
                            "whole reservation")
    if event.get("cost_micros") != settled + amount or event.get("reserved_micros") != released:
        raise LedgerCorrupt(f"{where}: the overrun's cost_micros and reserved_micros do not add up "
                            "with its settle")


def _check_money(where: str, event: dict[str, Any], open_: dict[str, int], closed: set[str]) -> None:
    """Every settle/release closes exactly one open reservation of the same amount: nothing is
    charged twice and nothing is released that was not reserved."""
    kind, eid = event["kind"], str(event.get("execution_id"))
    for k in ("amount_micros", "released_micros", "saved_micros", "cost_micros", "reserved_micros"):
        if k in event and (not _amount(event[k]) or event[k] < 0):
            raise LedgerCorrupt(f"{where}: {k} is not a non-negative integer")
    if kind == "reserve":
        if eid in open_ or eid in closed:
            raise LedgerCorrupt(f"{where}: execution {eid} reserved twice")
        open_[eid] = event["amount_micros"]
    elif kind in ("settle", "release"):
        if eid not in open_:
            again = " (already settled or released: a double charge)" if eid in closed else ""
            raise LedgerCorrupt(f"{where}: {kind} of execution {eid} without an open reservation{again}")
        released = event["released_micros"] if kind == "settle" else event["amount_micros"]
        if released != open_.pop(eid):
            raise LedgerCorrupt(f"{where}: {kind} of execution {eid} releases a different amount "
                                "than was reserved")
        closed.add(eid)


def verify(db: Database, txn: Any, plan: str, stored: Totals, open_reserved: int) -> Totals:
    """Replay ``plan``'s ledger (read in ``txn``) and compare it with the plan record's ``stored``
    totals and the sum of the plan's rows in the ``reservations`` database, read in the same
    transaction; :class:`LedgerCorrupt` on any difference. Returns the replayed totals."""
    totals = replay(plan, events(db, plan, txn))
    if totals != stored:
        diff = ", ".join(f"{k}: record {v!r}, ledger {getattr(totals, k)!r}"
                         for k, v in stored.to_dict().items() if getattr(totals, k) != v)
        hint = " (an event was removed from the end?)" if totals.events < stored.events else ""
        raise LedgerCorrupt(f"ledger of plan {plan!r} does not add up to the plan's totals: {diff}{hint}")
    if open_reserved != totals.reserved_micros:
        raise LedgerCorrupt(f"ledger of plan {plan!r}: open reservations hold {open_reserved} micro-USD, "
                            f"the ledger {totals.reserved_micros}")
    return totals
