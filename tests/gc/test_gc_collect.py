"""gc through the Python API and the CLI: what is live, grace, temp files, dry run, leases, pins."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from gc_support import HOUR, age, blob_files, garbage, gc_json, live_cids, run, stores
from theoryx_testing import Cli

from theoryx.errors import StoreBusy
from theoryx.store import action_cache
from theoryx.store.gc import collect as gc
from theoryx.store.gc.lock import GcLock
from theoryx.store.leases import Lease


def test_gc_keeps_all_that_is_live_and_deletes_the_unreachable_past_grace(home: Path, cli: Cli) -> None:
    first, second = run(home, "one"), run(home, "two")
    hit = run(home, "one")
    junk = garbage(home, 5)
    age(home)
    young = garbage(home, 2, tag="young")
    before = blob_files(home)

    body = gc_json(cli)

    after = blob_files(home)
    assert set(after) == set(before) - junk
    assert live_cids(first) | live_cids(second) | live_cids(hit) <= set(after)
    assert young <= set(after)
    assert body["reclaimed"]["count"] == 5
    assert body["examined"]["count"] == len(before)
    assert body["kept"]["count"] == len(before) - 5
    assert body["kept_young"]["count"] == 2
    parts = ("kept_live", "kept_leased", "kept_young", "restored")
    assert body["kept"]["count"] == sum(body[k]["count"] for k in parts)
    assert cli("verify").exit_code == 0
    assert run(home, "one").cache == "hit" and run(home, "two").cache == "hit"


def test_the_action_pre_image_and_what_it_names_stay_live(home: Path, cli: Cli, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("attached")
    result = run(home, inputs={"messages": [{"role": "user", "content": "hi"}],
                               "attachments": [{"$attach": "doc"}]}, attachments={"doc": doc})
    action = stores(home).cas.read(result.record.action_cid or "")
    named = {c for c in blob_files(home) if c.encode() in action}
    assert named, "the mock action names its context manifest and the attachment"
    age(home)
    gc_json(cli, "--grace", "0")
    assert named <= set(blob_files(home))
    assert run(home, inputs={"messages": [{"role": "user", "content": "hi"}],
                             "attachments": [{"$attach": "doc"}]}, attachments={"doc": doc}).cache == "hit"


def test_dry_run_deletes_nothing_and_reports_what_gc_then_does(home: Path) -> None:
    result = run(home)
    junk = garbage(home, 4)
    age(home)
    stale = stores(home).home.leases / "dead.lease"
    stale.write_text(f"{min(junk)}\n")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    tmp = home / "cas-v1" / "tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "abandoned.tmp").write_bytes(b"x" * 10)
    before = blob_files(home)
    later = lambda: time.time() + 2 * HOUR  # noqa: E731 - temp files age by ctime, which utime cannot set

    dry = gc.collect(stores(home), dry_run=True, max_age_s=HOUR, clock=later).to_dict()
    assert blob_files(home) == before and (tmp / "abandoned.tmp").exists() and stale.exists()
    assert action_cache.get(stores(home).db, result.memo_key) is not None
    assert stores(home).db.count("executions") == 1

    real = gc.collect(stores(home), max_age_s=HOUR, clock=later).to_dict()
    assert len(blob_files(home)) == len(before) - real["reclaimed"]["count"]
    assert action_cache.get(stores(home).db, result.memo_key) is None
    for report in (dry, real):
        report.pop("seconds"), report.pop("dry_run")
    assert dry["reclaimed"]["count"] == len(before), "evicted by age: the whole store goes"
    assert dry["temp_files"]["count"] == 1 and dry["cache_entries"]["evicted_by_age"] == 1
    assert dry["stale_leases_removed"] == 1 and not stale.exists()
    assert dry == real


def test_abandoned_temp_files_go_after_the_grace_period_only(home: Path) -> None:
    run(home)
    tmp = home / "cas-v1" / "tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "old.tmp").write_bytes(b"old")
    assert gc.collect(stores(home)).temp_files.count == 0
    assert (tmp / "old.tmp").exists()
    report = gc.collect(stores(home), clock=lambda: time.time() + 2 * HOUR)
    assert report.temp_files.count == 1 and not (tmp / "old.tmp").exists()


def test_held_leases_protect_and_stale_ones_are_removed(home: Path) -> None:
    s = stores(home)
    run(home)
    held_junk, stale_junk = garbage(home, 2, "held"), garbage(home, 2, "stale")
    age(home)
    stale = s.home.leases / "dead.lease"
    stale.write_text("".join(f"{c}\n" for c in stale_junk))
    os.utime(stale, (time.time() - 60, time.time() - 60))
    with Lease(s.home.leases, "alive") as lease:
        lease.add(held_junk)
        report = gc.collect(s, grace_s=0)
    assert held_junk <= set(blob_files(home))
    assert not stale_junk & set(blob_files(home))
    assert not stale.exists() and report.stale_leases == 1
    assert report.kept_leased.count == 2


def test_a_fresh_unheld_lease_is_not_taken_for_a_stale_one(home: Path) -> None:
    s = stores(home)
    junk = garbage(home, 1)
    age(home)
    newborn = s.home.leases / "newborn.lease"   # created, not yet flock'd by its owner
    newborn.write_text("".join(f"{c}\n" for c in junk))
    gc.collect(s, grace_s=0)
    assert newborn.exists() and junk <= set(blob_files(home))


def test_one_gc_at_a_time_with_a_stable_code(home: Path, cli: Cli) -> None:
    run(home)
    with GcLock(home, "test"):
        with pytest.raises(StoreBusy):
            gc.collect(stores(home))
        res = cli("gc", "--json")
        assert res.exit_code == 1
        assert json.loads(res.stdout)["error"]["code"] == "ERR_STORE_BUSY"
        human = cli("gc")
        assert human.exit_code == 1 and "busy" in human.stderr and "test (pid" in human.stderr
        assert cli("verify").exit_code == 1
    assert cli("gc").exit_code == 0


def test_a_blob_needed_again_while_withdrawn_is_put_back(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    s = stores(home)
    run(home)
    by_lease, by_entry, by_touch, doomed = (garbage(home, 1, tag) for tag in ("lease", "entry", "touch", "doomed"))
    age(home)
    sync = tmp_path / "sync"
    sync.mkdir()
    monkeypatch.setenv("THEORYX_SYNC_DIR", str(sync))
    monkeypatch.setenv("THEORYX_SYNC_POINTS", "gc_after_withdraw")
    out: dict[str, gc.GcReport] = {}
    worker = threading.Thread(target=lambda: out.setdefault("r", gc.collect(s, grace_s=HOUR)))
    worker.start()
    reached = sync / f"gc_after_withdraw.{os.getpid()}.reached"
    _wait(reached.exists)
    for cids in (by_lease, by_entry, by_touch, doomed):
        assert not cids & set(blob_files(home)), "withdrawn: out of sight"
        assert not any(s.cas.exists(c) for c in cids)
    lease = Lease(s.home.leases, "late")
    lease.add(by_lease)
    entry = action_cache.get(s.db, run(home).memo_key)
    assert entry is not None
    action_cache.put(s.db, entry.__class__.from_dict({**entry.to_dict(), "input_cids": sorted(by_entry)}))
    touched = next(iter(by_touch))[3:]
    os.utime(s.cas.root / "trash" / touched[:2] / touched[2:])  # as if freshened just before it went
    (sync / "gc_after_withdraw.go").touch()
    worker.join(30)
    lease.release()
    present = set(blob_files(home))
    assert by_lease | by_entry | by_touch <= present and not doomed & present
    assert out["r"].restored.count == 3 and out["r"].reclaimed.count == 1
    assert list(s.cas.withdrawn()) == []


def test_blobs_left_withdrawn_by_an_interrupted_gc_are_decided_again(home: Path) -> None:
    s = stores(home)
    result = run(home)
    junk = garbage(home, 1)
    age(home)
    for cid in live_cids(result) | junk:
        s.cas.withdraw(cid)
    report = gc.collect(s)
    assert report.recovered == len(live_cids(result) | junk)
    assert set(blob_files(home)) >= live_cids(result) and not junk & set(blob_files(home))
    assert run(home).cache == "hit"


def test_a_pruned_world_path_says_so(home: Path, cli: Cli) -> None:
    first = run(home)
    junk_output = first.outputs[0]
    s = stores(home)
    action_cache.delete(s.db, first.memo_key)
    age(home)
    gc.collect(s)
    res = cli("cat", junk_output.path)
    assert res.exit_code == 1
    assert "pruned" in res.stderr
    assert cli("show", first.execution_id).exit_code == 0, "the record stays"


def _wait(cond: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_lease_writes_a_cid_added_again_once(tmp_path: Path) -> None:
    """A batch leases the same blobs for every item: the lease file must not grow with the items."""
    from theoryx.store import leases

    cids = [f"b3:{i:064x}" for i in range(6)]
    with leases.Lease(tmp_path, "owner") as lease:
        for _ in range(10_000):
            lease.add(cids)
        lease.add([f"b3:{7:064x}"])
        lines = lease.path.read_text().splitlines()
        print(f"10,000 adds of the same 6 cids: {len(lines)} lines")
        assert sorted(lines) == sorted([*cids, f"b3:{7:064x}"])
        held = {path: found for path, _, found in leases.leased_cids(tmp_path)}
        assert held[lease.path] == {*cids, f"b3:{7:064x}"}, "gc sees every cid"
    assert not lease.path.exists()
