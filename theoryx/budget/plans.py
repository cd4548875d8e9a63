"""Plans: budget keys with an optional limit, running totals and an append-only ledger.

Invariant: for a plan with a limit, ``spent + reserved <= limit`` after every admission. A run
is admitted by :func:`reserve`, which in ONE LMDB write transaction (LMDB serialises writers
across processes) reads the plan, checks ``spent + reserved + estimate <= limit``, appends a
``reserve`` event and records the reservation (``reservations`` database, keyed by execution id,
naming the owner's lease file). Every reservation ends exactly once, keyed by execution id:

- :func:`settle` by its owner after the execution (success or failure): the actual cost is
  spent, the reservation released. Settling again is a no-op, so nothing is charged twice.
- :func:`reconcile` when the owner is provably gone (its lease file is not locked: the kernel
  drops ``flock`` locks of a dead process, even after ``kill -9``). Nothing is charged: what a
  killed run cost is unknown, and until reconciled its reservation keeps counting (fail closed).

The actual cost may exceed the reservation only where theoryx does not decide it: a processor
reporting more than its spec's worst case (up to the $10,000 one execution may report), compute
a platform billed beyond the timeout and margin. The ledger records the truth — the ``settle``
event charges the reservation and an ``overrun`` event the rest — so ``remaining`` may then go
negative, and every later admission is refused. Hence ``spent + reserved`` exceeds the limit by
no more than the recorded overruns (unless ``set-limit`` lowered the limit below it).
Cache hits append a ``hit`` event (cost 0, saved = the producer's cost). Plan keys: a letter or
digit, then up to 127 of letters, digits and ``. _ - : @ +``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from theoryx.budget import ledger
from theoryx.budget.ledger import Totals
from theoryx.budget.money import dollars
from theoryx.errors import BudgetExceeded, PlanExists, PlanKeyError, PlanNotFound, PriceUnknown
from theoryx.store.db import Database, pack, unpack
from theoryx.store.leases import is_held

T = TypeVar("T")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}\Z")


def check_key(key: str) -> str:
    """``key`` if it is a valid plan key, else :class:`PlanKeyError`."""
    if not _KEY.match(key):
        raise PlanKeyError(f"invalid plan key {key!r}: use a letter or digit, then up to 127 letters, "
                           "digits or . _ - : @ +")
    return key


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Plan:
    """A plan's record: its key, creation time and the running totals of its ledger."""

    key: str
    created_ms: int
    totals: Totals

    @property
    def limit_micros(self) -> int | None:
        return self.totals.limit_micros

    @property
    def remaining_micros(self) -> int | None:
        t = self.totals
        return None if t.limit_micros is None else t.limit_micros - t.spent_micros - t.reserved_micros

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "created_ms": self.created_ms, **self.totals.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(d["key"], d["created_ms"], Totals.from_dict(d))

    def to_json(self) -> dict[str, Any]:
        """The ``plan show --json`` object (money in integer micro-USD)."""
        t = self.totals
        return {
            "plan": self.key, "limit_micros": t.limit_micros, "spent_micros": t.spent_micros,
            "reserved_micros": t.reserved_micros, "remaining_micros": self.remaining_micros,
            "executions": t.executions, "cache_hits": t.hits, "saved_micros": t.saved_micros,
            "overruns": t.overruns, "overrun_micros": t.overrun_micros,
            "events": t.events, "head": t.head, "created_ms": self.created_ms,
        }


@dataclass(frozen=True)
class Reservation:
    """An open reservation: the worst-case estimate held for one execution."""

    execution_id: str
    plan: str
    amount_micros: int
    lease: str
    created_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"execution_id": self.execution_id, "plan": self.plan, "amount_micros": self.amount_micros,
                "lease": self.lease, "created_ms": self.created_ms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reservation:
        return cls(d["execution_id"], d["plan"], d["amount_micros"], d["lease"], d["created_ms"])


class _Txn:
    """Plan reads and ledger appends inside one write transaction."""

    def __init__(self, db: Database, txn: Any) -> None:
        self.db, self.txn, self.now = db, txn, _now_ms()

    def plan(self, key: str) -> Plan | None:
        raw = self.txn.get(key.encode(), db=self.db.dbs["plans"])
        return None if raw is None else Plan.from_dict(unpack(raw))

    def append(self, plan: Plan, kind: str, **fields: Any) -> Plan:
        _, totals = ledger.append(self.db, self.txn, plan.key, plan.totals, kind, self.now, **fields)
        plan = Plan(plan.key, plan.created_ms, totals)
        self.txn.put(plan.key.encode(), pack(plan.to_dict()), db=self.db.dbs["plans"])
        return plan

    def create(self, key: str, limit: int | None, by: str) -> Plan:
        return self.append(Plan(key, self.now, Totals()), "create", limit_micros=limit, by=by)

    def ensure(self, key: str) -> tuple[Plan, bool]:
        """The plan, created without a limit when missing; and whether it was created."""
        plan = self.plan(key)
        return (plan, False) if plan is not None else (self.create(key, None, "run"), True)

    def reservation(self, execution_id: str) -> Reservation | None:
        raw = self.txn.get(execution_id.encode(), db=self.db.dbs["reservations"])
        return None if raw is None else Reservation.from_dict(unpack(raw))

    def close(self, r: Reservation) -> None:
        self.txn.delete(r.execution_id.encode(), db=self.db.dbs["reservations"])


def _write(db: Database, fn: Callable[[_Txn], T]) -> T:
    return db.write(lambda txn: fn(_Txn(db, txn)))


def _not_found(key: str) -> PlanNotFound:
    exc = PlanNotFound(f"no plan {key!r}; create it first")
    exc.plan = key   # the CLI says how to create it
    return exc


def create(db: Database, key: str, limit_micros: int | None) -> Plan:
    """Create plan ``key``; :class:`PlanExists` if it exists."""
    check_key(key)

    def fn(t: _Txn) -> Plan:
        if t.plan(key) is not None:
            raise PlanExists(f"plan {key!r} already exists; change its limit with "
                             f"`theoryx plan set-limit {key} X`")
        return t.create(key, limit_micros, "user")

    return _write(db, fn)


def get(db: Database, key: str) -> Plan:
    """The plan, or :class:`PlanNotFound`."""
    raw = db.get("plans", check_key(key))
    if raw is None:
        raise _not_found(key)
    return Plan.from_dict(raw)


def all_plans(db: Database) -> list[Plan]:
    """Every plan, by key."""
    return [Plan.from_dict(v) for _, v in db.items("plans")]


def set_limit(db: Database, key: str, limit_micros: int | None) -> Plan:
    """Change the limit (None removes it). A limit below what is spent and reserved is allowed:
    it refuses every later admission."""
    check_key(key)

    def fn(t: _Txn) -> Plan:
        plan = t.plan(key)
        if plan is None:
            raise _not_found(key)
        return t.append(plan, "set-limit", limit_micros=limit_micros, previous_micros=plan.limit_micros)

    return _write(db, fn)


def reserve(db: Database, key: str, execution_id: str, amount_micros: int, *, lease: Path,
            parts: Mapping[str, int] | None = None, unknown: tuple[str, ...] = (),
            ref: str = "") -> tuple[Plan, bool]:
    """Admit one execution: check and record its reservation in one write transaction.

    Creates a missing plan without a limit. Under a limit, raises :class:`PriceUnknown` when
    the estimate has ``unknown`` parts (reasons it cannot bound the cost) and
    :class:`BudgetExceeded` when ``spent + reserved + amount`` would exceed the limit; nothing is
    written then. Returns the plan after the reservation and whether it was created.
    """
    check_key(key)

    def fn(t: _Txn) -> tuple[Plan, bool]:
        plan, created = t.ensure(key)
        limit = plan.limit_micros
        if limit is not None and unknown:
            raise PriceUnknown(f"plan {key!r} has a limit ({dollars(limit)}) but the cost of this run "
                               f"cannot be bounded: {'; '.join(unknown)}")
        s = plan.totals
        if limit is not None and s.spent_micros + s.reserved_micros + amount_micros > limit:
            raise BudgetExceeded(
                f"plan {key!r} cannot admit this run: estimate {dollars(amount_micros)} + spent "
                f"{dollars(s.spent_micros)} + reserved {dollars(s.reserved_micros)} exceeds the limit "
                f"{dollars(limit)}. Raise it with `theoryx plan set-limit {key} X`; reservations of "
                f"killed runs are released by `theoryx plan reconcile {key}`")
        if t.reservation(execution_id) is not None:
            return plan, created
        fields: dict[str, Any] = {"execution_id": execution_id, "amount_micros": amount_micros, "ref": ref}
        if parts:
            fields["estimate"] = dict(sorted(parts.items()))
        plan = t.append(plan, "reserve", **fields)
        r = Reservation(execution_id, key, amount_micros, str(lease), t.now)
        t.txn.put(execution_id.encode(), pack(r.to_dict()), db=db.dbs["reservations"])
        return plan, created

    return _write(db, fn)


def settle(db: Database, execution_id: str, amount_micros: int, *, status: str,
           parts: Mapping[str, int] | None = None, refused: str | None = None,
           billing: Mapping[str, Any] | None = None) -> Plan | None:
    """Charge ``amount_micros`` and release the reservation of ``execution_id``. Idempotent:
    without an open reservation (already settled, or released by reconcile) nothing happens and
    None is returned. ``parts`` (how the amount is made up: ``compute`` apart from ``llm``,
    ``reported``...) goes on the event as ``cost`` when given, as the estimate's on ``reserve``;
    ``refused`` (why the processor's reported cost was refused) as ``refused``; ``billing`` (the
    adapter's basis for billed compute, e.g. the modal adapter's) as ``billing``.

    The ``settle`` event charges at most the reservation; an amount above it is charged by an
    ``overrun`` event for the difference, appended in the same transaction, so that no charge
    beyond a reservation is ever silent (:mod:`theoryx.budget.ledger`)."""

    def fn(t: _Txn) -> Plan | None:
        r = t.reservation(execution_id)
        if r is None:
            return None
        plan = t.plan(r.plan)
        if plan is None:
            raise _not_found(r.plan)
        extra: dict[str, Any] = {"cost": dict(sorted(parts.items()))} if parts else {}
        if refused is not None:
            extra["refused"] = refused
        if billing:
            extra["billing"] = dict(sorted(billing.items()))
        plan = t.append(plan, "settle", execution_id=execution_id,
                        amount_micros=min(amount_micros, r.amount_micros),
                        released_micros=r.amount_micros, status=status, **extra)
        if amount_micros > r.amount_micros:
            plan = t.append(plan, "overrun", execution_id=execution_id,
                            amount_micros=amount_micros - r.amount_micros, cost_micros=amount_micros,
                            reserved_micros=r.amount_micros)
        t.close(r)
        return plan

    return _write(db, fn)


def record_hit(db: Database, key: str, execution_id: str, saved_micros: int,
               source_execution: str | None) -> tuple[Plan, bool]:
    """Append a ``hit`` event (cost 0, ``saved_micros`` saved); creates a missing plan without
    a limit. Returns the plan and whether it was created."""
    check_key(key)

    def fn(t: _Txn) -> tuple[Plan, bool]:
        plan, created = t.ensure(key)
        plan = t.append(plan, "hit", execution_id=execution_id, saved_micros=saved_micros,
                        source_execution=source_execution)
        return plan, created

    return _write(db, fn)


def reservations(db: Database, key: str | None = None) -> list[Reservation]:
    """Open reservations (of plan ``key``, or all)."""
    rows = (Reservation.from_dict(v) for _, v in db.items("reservations"))
    return [r for r in rows if key is None or r.plan == key]


@dataclass(frozen=True)
class Reconciled:
    """What :func:`reconcile` did: reservations released (owner gone) and those left alone."""

    plan: Plan
    released: tuple[Reservation, ...]
    held: tuple[Reservation, ...]


def reconcile(db: Database, key: str, leases_dir: Path) -> Reconciled:
    """Release the reservations of plan ``key`` whose owner is gone (lease not locked), appending
    a ``release`` event for each; nothing is charged. The lease is looked up by its file name in
    ``leases_dir`` (the home may have moved since the reservation was made). A reservation
    settled meanwhile is skipped: each one ends exactly once."""
    get(db, key)
    released: list[Reservation] = []
    held: list[Reservation] = []
    for r in reservations(db, key):
        if is_held(leases_dir / Path(r.lease).name):
            held.append(r)
            continue

        def fn(t: _Txn, r: Reservation = r) -> Plan | None:
            current, p = t.reservation(r.execution_id), t.plan(key)
            if current is None or p is None:
                return None
            p = t.append(p, "release", execution_id=r.execution_id, amount_micros=current.amount_micros,
                         reason="owner gone (lease free)")
            t.close(current)
            return p

        if _write(db, fn) is not None:
            released.append(r)
    return Reconciled(get(db, key), tuple(released), tuple(held))


def verify(db: Database, key: str) -> Totals:
    """Replay the plan's ledger against its record and open reservations, all read in one
    transaction (a consistent snapshot while runs go on); :class:`LedgerCorrupt` on a mismatch."""
    check_key(key)

    def fn(txn: Any) -> Totals:
        raw = txn.get(key.encode(), db=db.dbs["plans"])
        if raw is None:
            raise _not_found(key)
        rows = (unpack(v) for _, v in txn.cursor(db=db.dbs["reservations"]).iternext())
        open_reserved = sum(r["amount_micros"] for r in rows if r.get("plan") == key)
        return ledger.verify(db, txn, key, Plan.from_dict(unpack(raw)).totals, open_reserved)

    return db.read(fn)
