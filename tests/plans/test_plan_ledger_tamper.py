"""A tampered ledger is detected: edited, removed, reordered events, or totals that disagree."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from plans_testing import db_of, run_costly
from theoryx_testing import Cli

from theoryx.budget import ledger, plans
from theoryx.errors import LedgerCorrupt
from theoryx.store.db import Database, pack, unpack


@pytest.fixture
def filled(home: Path, registry: Path) -> Database:
    """Plan ``p`` with 8 events: create, 3 x (reserve, settle), hit."""
    run_costly(home, registry, 0, plan=None)
    plans.create(db_of(home), "p", 5_000_000)
    for i, cost in ((1, 0.1), (2, 0.2), (3, 0.25)):
        run_costly(home, registry, i, cost_usd=cost)
    run_costly(home, registry, 1)
    db = db_of(home)
    assert plans.verify(db, "p").events == 8
    return db


def key(seq: int) -> bytes:
    return ledger.event_key("p", seq).encode()


def edit(db: Database, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    def fn(txn: Any) -> None:
        event = unpack(txn.get(key(seq), db=db.dbs["ledger"]))
        change(event)
        txn.put(key(seq), pack(event), db=db.dbs["ledger"])

    db.write(fn)


def delete(db: Database, seq: int) -> None:
    db.write(lambda txn: txn.delete(key(seq), db=db.dbs["ledger"]))


def swap(db: Database, a: int, b: int) -> None:
    def fn(txn: Any) -> None:
        va, vb = txn.get(key(a), db=db.dbs["ledger"]), txn.get(key(b), db=db.dbs["ledger"])
        txn.put(key(a), vb, db=db.dbs["ledger"])
        txn.put(key(b), va, db=db.dbs["ledger"])

    db.write(fn)


def rehash(event: dict[str, Any]) -> None:
    event["hash"] = ledger.event_hash(event)


def lower_charge(event: dict[str, Any]) -> None:
    event["amount_micros"] = 1


TAMPERING: dict[str, tuple[Callable[[Database], None], str]] = {
    "edited amount": (lambda db: edit(db, 2, lower_charge), "edited"),
    "edited amount, hash recomputed": (
        lambda db: edit(db, 2, lambda e: (lower_charge(e), rehash(e))), "does not follow"),
    "edited limit": (lambda db: edit(db, 0, lambda e: e.update(limit_micros=10**9)), "edited"),
    "removed event": (lambda db: delete(db, 3), "out of sequence"),
    "removed first event": (lambda db: delete(db, 0), "out of sequence"),
    "removed last event": (lambda db: delete(db, 7), "does not add up"),
    "swapped events": (lambda db: swap(db, 3, 5), "out of sequence"),
    "reordered keys and seqs": (
        lambda db: (swap(db, 3, 5), edit(db, 3, lambda e: e.update(seq=3)), edit(db, 5, lambda e: e.update(seq=5))),
        "does not follow"),
    "edited plan totals": (
        lambda db: db.put("plans", "p", {**db.get("plans", "p"), "spent_micros": 0}), "does not add up"),
}


def raw_put(db: Database, seq: int, raw: bytes) -> None:
    db.write(lambda txn: txn.put(key(seq), raw, db=db.dbs["ledger"]))


TAMPERING.update({      # stored bytes no reader could decode, show as JSON or check
    "not msgpack": (lambda db: raw_put(db, 2, b"\xc1\xc1"), "cannot be decoded"),
    "integer map key": (lambda db: raw_put(db, 2, pack({1: 2})), "cannot be decoded"),
    "binary value": (lambda db: edit(db, 2, lambda e: e.update(status=b"\xff")), "not a JSON object"),
    "NaN amount": (lambda db: edit(db, 2, lambda e: e.update(amount_micros=float("nan"))), "not a JSON object"),
    "not a map": (lambda db: raw_put(db, 2, pack([1, 2])), "not a JSON object"),
})


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampered_ledger_is_detected(filled: Database, how: str) -> None:
    tamper, says = TAMPERING[how]
    tamper(filled)
    with pytest.raises(LedgerCorrupt) as info:
        plans.verify(filled, "p")
    assert says in info.value.message and info.value.code == "ERR_LEDGER_CORRUPT"


def test_a_settle_without_reservation_is_a_double_charge(filled: Database) -> None:
    def duplicate(txn: Any) -> None:     # a second settle of execution 1, appended properly
        p = plans.Plan.from_dict(unpack(txn.get(b"p", db=filled.dbs["plans"])))
        settle = unpack(txn.get(key(2), db=filled.dbs["ledger"]))
        extra = {k: settle[k] for k in ("execution_id", "amount_micros", "released_micros", "status")}
        _, totals = ledger.append(filled, txn, "p", p.totals, "settle", settle["at_ms"], **extra)
        txn.put(b"p", pack(plans.Plan(p.key, p.created_ms, totals).to_dict()), db=filled.dbs["plans"])

    filled.write(duplicate)
    with pytest.raises(LedgerCorrupt, match="double charge"):
        plans.verify(filled, "p")


def test_verify_through_the_cli_exits_1_with_the_error_code(filled: Database, home: Path, registry: Path) -> None:
    cli = Cli(home, registry)
    assert cli("plan", "ledger", "p", "--verify").exit_code == 0
    edit(filled, 4, lower_charge)
    res = cli("plan", "ledger", "p", "--verify")
    assert res.exit_code == 1 and "event 4" in res.stderr and "edited" in res.stderr
    body = json.loads(cli("plan", "ledger", "p", "--verify", "--json").stdout)
    assert body["verified"] is False and body["error"]["code"] == "ERR_LEDGER_CORRUPT"


@pytest.mark.parametrize(("seq", "change", "says"), [
    (7, lambda e: (e.pop("saved_micros"), rehash(e)), "a hit event without saved_micros"),
    (7, lambda e: (e.pop("kind"), rehash(e)), "unknown event kind None"),
    (0, lambda e: (e.update(limit_micros="lots"), rehash(e)), "limit_micros is neither null"),
    (4, lambda e: e.pop("amount_micros"), "edited"),
])
def test_an_event_missing_a_field_is_corrupt_not_an_internal_error(
        filled: Database, home: Path, registry: Path, seq: int, change: Callable[[dict[str, Any]], None],
        says: str) -> None:
    # replaying an event without its kind's fields raised KeyError (ERR_INTERNAL) when its hash
    # had been recomputed; listing the ledger did so for any such event, verified or not
    cli = Cli(home, registry)
    edit(filled, seq, change)
    with pytest.raises(LedgerCorrupt) as info:
        plans.verify(filled, "p")
    assert says in info.value.message
    listed = cli("plan", "ledger", "p")
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 8
    assert "damaged event" in listed.stdout.splitlines()[seq]
    res = cli("plan", "ledger", "p", "--verify", "--json")
    assert res.exit_code == 1 and json.loads(res.stdout)["error"]["code"] == "ERR_LEDGER_CORRUPT"


@pytest.mark.parametrize("field", ["amount_micros", "released_micros"])
def test_a_boolean_amount_is_corrupt(filled: Database, field: str) -> None:
    """`true` passed the ledger's integer checks (a bool is an int in Python) and counted as 1
    micro-USD when its hash was recomputed."""
    edit(filled, 2, lambda e: (e.update({field: True}), rehash(e)))
    with pytest.raises(LedgerCorrupt, match=f"{field} is not a non-negative integer"):
        plans.verify(filled, "p")


@pytest.mark.parametrize("how", ["not msgpack", "integer map key", "binary value", "NaN amount"])
@pytest.mark.parametrize("args", [(), ("--json",), ("--verify",), ("--json", "--verify")])
def test_an_undecodable_event_is_ledger_corrupt_in_every_form_of_plan_ledger(
        filled: Database, home: Path, registry: Path, how: str, args: tuple[str, ...]) -> None:
    """Before: ERR_INTERNAL and a crash file (msgpack's ValueError, or json.dumps of bytes), or
    `NaN` printed as if it were JSON."""
    TAMPERING[how][0](filled)
    res = Cli(home, registry)("plan", "ledger", "p", *args)
    assert res.exit_code == 1 and "ERR_INTERNAL" not in res.output and "internal error" not in res.stderr
    assert "ledger event p/000000000002" in res.stderr
    if "--json" in args:
        assert json.loads(res.stdout)["error"]["code"] == "ERR_LEDGER_CORRUPT"
