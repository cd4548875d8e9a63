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


@pytest.mark.usefixtures("small_map")
def test_threads_growing_a_full_map_while_others_read_through_cursors(tmp_path: Path) -> None:
    """MapFullError's growth bypassed the coordination: readers failed ("closed/deleted/dropped
    object", "Invalid argument"), a writer could not set the size while another wrote, and racing
    growths overshot the map."""
    db = dbmod.Database(tmp_path / "db")
    errors: list[str] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        for i in range(40):
            try:
                db.write(lambda txn, i=i: txn.put(b"w%d-%d" % (n, i), b"x" * (64 << 10), db=db.dbs["pins"]))
            except Exception as exc:  # every failure is the finding
                errors.append(f"write {type(exc).__name__}: {exc}")

    def reader() -> None:
        while not stop.wait(0.002):
            try:
                db.read(lambda txn: sum(1 for _ in txn.cursor(db=db.dbs["pins"])))
            except Exception as exc:
                errors.append(f"read {type(exc).__name__}: {exc}")

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in (*writers, *readers):
        t.start()
    for t in writers:
        t.join(timeout=120)
    stop.set()
    for t in readers:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in (*writers, *readers)), "stuck"
    assert errors == []
    assert db.count("pins") == 160
    assert db.env.info()["map_size"] <= 32 << 20        # 160 x 64 KiB = 10 MiB: grown by doubling, once per size


def test_a_read_does_not_wait_for_another_threads_write_begin(tmp_path: Path) -> None:
    """Begin held the process's mutex while a write begin waited for another process's writer:
    every read in the process waited too (2.8 s here)."""
    import time

    db = dbmod.Database(tmp_path / "db")
    db.write(lambda txn: txn.put(b"k", b"v"))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import lmdb, os, sys, time\n"
        "env = lmdb.open(os.fsencode(sys.argv[1]), map_size=1 << 30, max_dbs=16, subdir=True)\n"
        "with env.begin(write=True):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(3)\n"), str(tmp_path / "db")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    waiting = threading.Thread(target=lambda: db.write(lambda txn: None))
    waiting.start()
    time.sleep(0.2)
    assert db.count("pins") == 0
    blocked = waiting.is_alive()        # the read returned while the write still waits for the holder
    waiting.join()
    holder.wait(timeout=30)
    assert blocked
