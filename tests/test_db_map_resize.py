"""Review 1, defect 4: a long-lived process beside another that grows the database past its map.
LMDB then answers every transaction's begin with ``MDB_MAP_RESIZED``: ``theoryx map`` died with
ERR_INTERNAL (a crash file, the failed item unrecorded), a ``Session`` raised raw
``lmdb.MapResizedError`` and every later transaction failed. Now the grown map is adopted
(``set_mapsize(0)``) and the transaction begun again, whatever the transaction. A 1 MiB initial
map keeps the growth small (8 MiB)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from theoryx_testing import REGISTRY

import theoryx
from theoryx.store import db as dbmod

GROW = r'''
import lmdb, sys
env = lmdb.open(sys.argv[1], map_size=1 << 20, max_dbs=16, subdir=True, max_readers=512)
junk = env.open_db(b"junk")
i = 0
while i < 64:
    try:
        with env.begin(write=True) as txn:
            for j in range(8):
                txn.put(b"%s-%08d" % (sys.argv[2].encode(), i + j), b"x" * (128 << 10), db=junk)
        i += 8
    except lmdb.MapFullError:
        env.set_mapsize(env.info()["map_size"] * 2)
print(env.info()["map_size"])
'''


ROUNDS = iter(range(1_000_000))


def grow(path: Path) -> int:
    """Another process adds 8 MiB to the environment at ``path``; its map size after."""
    out = subprocess.run([sys.executable, "-c", GROW, str(path), str(next(ROUNDS))], capture_output=True,
                         text=True, check=True)
    return int(out.stdout)


@pytest.fixture
def small_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "INITIAL_MAP_SIZE", 1 << 20)


@pytest.mark.usefixtures("small_map")
def test_every_kind_of_transaction_adopts_a_map_another_process_grew(tmp_path: Path) -> None:
    db = dbmod.Database(tmp_path / "db")
    try:
        db.put("pins", "a", {"n": 1})
        calls = [
            lambda: db.get("pins", "a"),
            lambda: db.read(lambda txn: txn.get(b"a", db=db.dbs["pins"])),
            lambda: list(db.items("pins")),
            lambda: db.count("pins"),
            lambda: db.put("pins", "b", {"n": 2}),
            lambda: db.write(lambda txn: txn.put(b"c", b"\x01", db=db.dbs["pins"])),
        ]
        for call in calls:
            assert grow(tmp_path / "db") > db.env.info()["map_size"]
            call()
        assert db.get("pins", "a") == {"n": 1} and db.count("pins") == 3
    finally:
        db.env.close()


@pytest.mark.usefixtures("small_map")
def test_threads_in_transactions_are_not_cut_off_when_the_map_is_adopted(tmp_path: Path) -> None:
    db = dbmod.Database(tmp_path / "db")
    try:
        db.put("pins", "a", {"n": 1})
        inside, release, seen = threading.Event(), threading.Event(), []

        def reader() -> None:
            with db.begin(db=db.dbs["pins"]) as txn:
                inside.set()
                release.wait(10)
                seen.append(txn.get(b"a"))

        thread = threading.Thread(target=reader)
        thread.start()
        inside.wait(10)
        grow(tmp_path / "db")
        threading.Timer(0.2, release.set).start()
        assert db.get("pins", "a") == {"n": 1}     # waits for the reader's transaction to end, then adopts
        thread.join(10)
        assert seen and seen[0] is not None
    finally:
        db.env.close()


@pytest.mark.usefixtures("small_map")
def test_a_session_keeps_working_after_another_process_grew_the_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inputs = {"messages": [{"role": "user", "content": "first"}]}
    with theoryx.Session(home, registry=str(REGISTRY)) as session:
        assert session.run("llm/litellm@1", adapter="mock", inputs=inputs).cache == "miss"
        grow(home / "db-v1")
        again = session.run("llm/litellm@1", adapter="mock", inputs={"messages": [{"role": "user", "content": "2"}]})
        assert again.cache == "miss"
        grow(home / "db-v1")
        assert session.run("llm/litellm@1", adapter="mock", inputs=inputs).cache == "hit"
