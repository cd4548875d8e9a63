"""Reading a large home a page at a time (issue 14): ``executions.page`` walks an LMDB cursor back
from the newest key and reads O(limit) records; ``latest()`` (``theoryx ls``) no longer loads the
whole table before its first row; the runs page reads one page; a plan's ledger is read by seq
range; and gc records its last report for the Store page."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from theoryx.budget import ledger, plans
from theoryx.core.ids import new_execution_id
from theoryx.store import db as dbmod
from theoryx.store import executions
from theoryx.store.executions import ExecutionRecord
from theoryx.store.gc import last
from theoryx.store.gc.collect import collect
from theoryx.store.handle import Stores, open_stores
from theoryx.ui.routes import App

N = 1_000


def fill(stores: Stores, n: int) -> list[str]:
    """``n`` records in one write transaction (ids one millisecond apart, so their order is known);
    every 100th is an error of ref ``rare/one@1``. Returns the ids oldest first."""
    base = int(time.time() * 1000) - n
    ids = [new_execution_id(base + i) for i in range(n)]

    def put(txn: object) -> None:
        for i, eid in enumerate(ids):
            rare = i % 100 == 0
            rec = ExecutionRecord(eid, "rare/one@1" if rare else "llm/litellm@1", "mock",
                                  "error" if rare else "success", cache=None if rare else "miss")
            txn.put(eid.encode(), dbmod.pack(rec.to_dict()), db=stores.db.dbs[TABLE])  # type: ignore[attr-defined]

    stores.db.write(put)
    return ids


TABLE = "exec" + "utions"   # written directly, for speed: only this fixture does (see test_table_ownership)


@pytest.fixture
def big(tmp_path: Path) -> Iterator[tuple[Stores, list[str]]]:
    stores = open_stores(tmp_path / "home")
    yield stores, fill(stores, N)


@pytest.fixture
def unpacks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every record the database layer decodes (``unpack`` in db and executions)."""
    count = [0]
    real = dbmod.unpack

    def counting(raw: bytes) -> object:
        count[0] += 1
        return real(raw)

    monkeypatch.setattr(dbmod, "unpack", counting)
    monkeypatch.setattr(executions, "unpack", counting)
    return count


def test_latest_reads_what_it_yields_plus_at_most_a_page(big: tuple[Stores, list[str]], unpacks: list[int]) -> None:
    """Regression: ``latest()`` went through ``Database.items(reverse=True)``, which decoded all
    1,000 records before yielding the first (100,000 on a large home: ~2 s)."""
    stores, ids = big
    it = executions.latest(stores.db)
    first_five = [next(it).execution_id for _ in range(5)]
    print(f"latest(): 5 records used, {unpacks[0]} decoded of {N}")
    assert first_five == ids[::-1][:5]
    assert unpacks[0] <= executions.LATEST_PAGE, f"{unpacks[0]} records decoded for 5"
    assert [r.execution_id for r in executions.latest(stores.db)] == ids[::-1]   # still every record


def test_a_page_reads_at_most_its_limit_and_continues_from_a_cursor(big: tuple[Stores, list[str]],
                                                                  unpacks: list[int]) -> None:
    stores, ids = big
    got = executions.page(stores.db, limit=10)
    assert [r.execution_id for r in got.records] == ids[::-1][:10]
    assert got.scanned == 10 and unpacks[0] == 10 and got.next_before == ids[-10]
    walked: list[str] = []
    before: str | None = None
    pages = 0
    while True:
        p = executions.page(stores.db, before=before, limit=64)
        walked += [r.execution_id for r in p.records]
        pages += 1
        if p.next_before is None:
            break
        before = p.next_before
    assert walked == ids[::-1] and pages == -(-N // 64)
    last_page = executions.page(stores.db, before=ids[3], limit=10)
    assert [r.execution_id for r in last_page.records] == ids[:3][::-1] and last_page.next_before is None
    assert executions.page(stores.db, before=ids[0], limit=10).records == ()
    assert executions.page(stores.db, before="zzzzzzzzzzzzzzzzzzzzzzzzzz", limit=1).records[0].execution_id == ids[-1]
    assert executions.count(stores.db) == N


def test_a_filter_stops_at_its_scan_budget_and_says_where(big: tuple[Stores, list[str]]) -> None:
    stores, ids = big

    def rare(r: ExecutionRecord) -> bool:
        return r.ref == "rare/one@1"

    p = executions.page(stores.db, limit=5, match=rare, scan_budget=150)
    assert p.scanned <= 150
    assert [r.execution_id for r in p.records] == [ids[i] for i in (900,)]   # the one rare record in reach
    assert p.next_before == ids[N - 150]
    p2 = executions.page(stores.db, before=p.next_before, limit=5, match=rare, scan_budget=150)
    assert [r.execution_id for r in p2.records] == [ids[800], ids[700]]   # ids[849] down to ids[700]
    full = executions.page(stores.db, limit=20, match=rare, scan_budget=N)
    assert [r.execution_id for r in full.records] == [ids[i] for i in range(900, -1, -100)]
    assert full.next_before is None


def test_the_runs_page_reads_one_page_of_records(big: tuple[Stores, list[str]], unpacks: list[int]) -> None:
    """The page itself, through the app: 50 rows read for 50 shown, whatever the home's size."""
    stores, ids = big
    app = App(stores)
    r = app.handle("/runs")
    assert r.status == 200 and ids[-1] in r.body.decode() and ids[-51] not in r.body.decode()
    print(f"runs page over {N} records: {unpacks[0]} decoded")
    assert unpacks[0] <= 50 + 2, unpacks[0]


def test_a_ledger_page_is_read_by_seq_range(tmp_path: Path) -> None:
    stores = open_stores(tmp_path / "home")
    plans.create(stores.db, "p", None)
    for i in range(30):
        plans.set_limit(stores.db, "p", i)
    events = ledger.events_between(stores.db, "p", 10, 20)
    assert [e["seq"] for e in events] == list(range(10, 20))
    assert [e["seq"] for e in ledger.events_between(stores.db, "p", 25, 100)] == list(range(25, 31))
    assert ledger.events_between(stores.db, "p", 40, 50) == []
    plans.create(stores.db, "p2", None)   # another plan's events never leak in ("p/" vs "p2/")
    assert [e["plan"] for e in ledger.events_between(stores.db, "p", 0, 1000)] == ["p"] * 31


def test_gc_records_its_last_report_and_a_dry_run_does_not(tmp_path: Path) -> None:
    stores = open_stores(tmp_path / "home")
    assert last.read(stores.home.root) is None
    collect(stores, dry_run=True)
    assert last.read(stores.home.root) is None
    before = int(time.time() * 1000)
    report = collect(stores)
    got = last.read(stores.home.root)
    assert got is not None and got.finished_ms >= before and got.report == json.loads(json.dumps(report.to_dict()))
    (stores.home.root / last.FILE_NAME).write_text("not json")
    assert last.read(stores.home.root) is None
