"""`theoryx stats` reads counters maintained with every execution record, never the records:
they agree with a scan after misses, hits, failures, group-committed batches, gc deletions and
overwrites, are computed once for a home that never had them, and recomputed when another writer
left them behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import HELLO, REGISTRY

import theoryx
from theoryx.errors import TheoryxError
from theoryx.store import executions, stats
from theoryx.store.db import Database, pack
from theoryx.store.handle import open_stores


def scanned(db: Database) -> dict[str, int]:
    """The counts the slow way: every record read."""
    out = dict.fromkeys(("total", "hits", "misses", "bypassed", "failures", "spent_micros", "saved_micros"), 0)
    for rec in executions.records(db):
        out["total"] += 1
        key = ("failures" if rec.status != "success" else "hits" if rec.cache == "hit"
               else "bypassed" if rec.cache == "bypass" else "misses")
        out[key] += 1
        out["spent_micros"] += rec.cost_micros
        out["saved_micros"] += rec.saved_micros
    return out


def maintained(db: Database) -> dict[str, int]:
    c = executions.counts(db)
    return {"total": c.total, "hits": c.hits, "misses": c.misses, "bypassed": c.bypassed, "failures": c.failures,
            "spent_micros": c.spent_micros, "saved_micros": c.saved_micros}


def stored_counters(db: Database) -> Any:
    return db.get("counters", "executions")


def work(home: Path, n: int) -> None:
    """Misses, hits (single and batched, group-committed) and failures."""
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        for i in range(n):
            s.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": f"c{i}"}]}, adapter="mock",
                  adapter_options={"cost_usd": 0.25})
        s.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": "c0"}]}, adapter="mock",
              adapter_options={"cost_usd": 0.25})
        items = [{"inputs": {"messages": [{"role": "user", "content": f"c{i % n}"}]}} for i in range(2 * n)]
        assert all(r.ok for r in s.map("llm/litellm@1", items, adapter="mock", jobs=2))
        with pytest.raises(TheoryxError):
            s.run("no/such@1", adapter="mock")


def test_counters_agree_with_a_scan_through_misses_hits_batches_and_failures(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = open_stores(home).db
    assert maintained(db) == scanned(db)           # an empty home: zeros, now stored
    assert stored_counters(db) is not None
    work(home, 4)
    want = scanned(db)
    print(f"after work: {want}")
    assert want["misses"] == 4 and want["hits"] == 9 and want["failures"] == 1 and want["saved_micros"] > 0
    assert stored_counters(db) == want, "maintained by the writes themselves (no recount)"
    assert maintained(db) == want


def test_stats_reads_no_execution_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    work(home, 2)
    stores = open_stores(home)
    want = scanned(stores.db)
    executions.counts(stores.db)

    def forbidden(*args: object, **kwargs: object) -> Any:
        raise AssertionError("stats read the execution records")

    monkeypatch.setattr(executions, "records", forbidden)
    monkeypatch.setattr(executions, "records_in", forbidden)
    got = stats.stats(stores)
    assert (got.executions, got.hits, got.misses, got.failures) == (
        want["total"], want["hits"], want["misses"], want["failures"])
    assert (got.spent_micros, got.saved_micros) == (want["spent_micros"], want["saved_micros"])


def test_a_home_without_counters_gets_them_once_then_they_are_maintained(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work(home, 2)                                   # counters never computed: writers leave them absent
    db = open_stores(home).db
    assert stored_counters(db) is None
    assert maintained(db) == scanned(db)
    work(home, 3)
    assert stored_counters(db) == scanned(db)
    assert maintained(db) == scanned(db)


def test_gc_deletions_and_overwrites_keep_the_counters_true(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = open_stores(home).db
    executions.counts(db)
    work(home, 3)
    victim = next(r for r in executions.records(db) if r.cache == "miss")
    assert db.write(lambda txn: executions.drop_in(txn, db, victim.execution_id))
    assert stored_counters(db) == scanned(db), "the deletion took its record off the counters"
    again = next(r for r in executions.records(db) if r.cache == "hit")
    executions.record(db, again.with_(status="error", error={"code": "ERR_X", "message": "x"}))
    assert stored_counters(db) == scanned(db), "an overwritten record is counted once, as it is now"
    assert maintained(db) == scanned(db)


def test_counters_left_behind_by_another_writer_are_recomputed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = open_stores(home).db
    executions.counts(db)
    work(home, 2)
    rec = next(executions.records(db)).with_(execution_id="01zzzzzzzzzzzzzzzzzzzzzzzz")
    # a writer that knows nothing of counters (an older theoryx): the record lands, the counters stay
    db.write(lambda txn: txn.put(rec.execution_id.encode(), pack(rec.to_stored()), db=db.dbs["executions"]))
    assert stored_counters(db)["total"] == scanned(db)["total"] - 1
    assert maintained(db) == scanned(db)


def test_theoryx_stats_cli_shows_the_maintained_counts(tmp_path: Path) -> None:
    from theoryx_testing import Cli

    home = tmp_path / "home"
    theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    import json

    out = json.loads(Cli(home, REGISTRY)("stats", "--json").stdout)
    assert out["executions"] == {"total": 2, "hits": 1, "misses": 1, "bypassed": 0, "failures": 0}


def test_counters_an_older_theoryx_rewrote_without_bypassed_are_recounted(tmp_path: Path) -> None:
    """A theoryx without the bypassed counter writes the counters back without it (and counts a
    bypass as a miss): total still matched the records, so the parts never added up again."""
    from theoryx.store.db import pack

    home = tmp_path / "home"
    theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY), no_cache=True)
    db = open_stores(home).db
    assert maintained(db)["bypassed"] == 1
    older = {"total": 2, "hits": 0, "misses": 1, "failures": 0, "spent_micros": 0, "saved_micros": 0}
    db.write(lambda txn: txn.put(executions._COUNTERS_KEY, pack(older), db=db.dbs["counters"]))
    assert maintained(db) == scanned(db) and maintained(db)["bypassed"] == 1


def test_an_ambiguous_id_prefix_reads_two_records_not_every_match(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`show 01m8vs` (a 6-character prefix spans ~4 minutes of ids: a batch's thousands) read and
    decoded every matching record only to say "ambiguous"; two are enough."""
    from theoryx.errors import NotFound
    from theoryx.store import db as dbmod
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    stores = open_stores(tmp_path / "home")
    base = executions.ExecutionRecord.begun("01m8vs" + "0" * 20, "x/y@1", "mock", plan=None, seed=0, started_ms=1)
    executions.record_many(stores.db, [executions.Recording(base.with_(execution_id=f"01m8vs{i:020d}"))
                                       for i in range(500)])
    decoded = 0
    real = dbmod.unpack

    def counting(raw: bytes) -> object:
        nonlocal decoded
        decoded += 1
        return real(raw)

    monkeypatch.setattr(dbmod, "unpack", counting)
    with pytest.raises(NotFound, match="ambiguous prefix"):
        executions.get(stores.db, "01m8vs")
    assert decoded <= 3, decoded
    assert executions.get(stores.db, "01m8vs00000000000000000499").execution_id.endswith("499")
