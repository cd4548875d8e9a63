"""gc against runs in other processes, at interleavings forced by sync points (no sleeps), and
gc killed with SIGKILL. Afterwards no cache entry names a missing blob, no run lost an output,
and ``verify`` is clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gc_support import HOUR, age, blob_files, garbage, inputs, run, stores
from theoryx_testing import REPO, Cli, subprocess_env

from theoryx.store import action_cache, executions
from theoryx.store.db import close_all

THEORYX = [sys.executable, "-m", "theoryx"]


class Proc:
    """A theoryx process that pauses at the sync points it is given."""

    def __init__(self, home: Path, sync: Path, args: list[str], points: list[str]) -> None:
        self.sync = sync
        env = subprocess_env(home, THEORYX_SYNC_DIR=str(sync), THEORYX_SYNC_POINTS=",".join(points))
        self.popen = subprocess.Popen([*THEORYX, *args], env=env, cwd=REPO, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def reached(self, point: str, timeout: float = 60) -> None:
        flag = self.sync / f"{point}.{self.popen.pid}.reached"
        deadline = time.monotonic() + timeout
        while not flag.exists():
            if self.popen.poll() is not None:
                raise AssertionError(f"exited before {point}: {self.popen.stderr.read() if self.popen.stderr else ''}")
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.005)

    def go(self, point: str) -> None:
        (self.sync / f"{point}.{self.popen.pid}.go").touch()

    def result(self) -> dict[str, Any]:
        out, err = self.popen.communicate(timeout=120)
        assert self.popen.returncode == 0, err
        body: dict[str, Any] = json.loads(out)
        return body


def writer(home: Path, sync: Path, text: str, point: str, *extra: str) -> Proc:
    args = ["run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1", *extra]
    if "--inputs-json" not in extra:
        args += ["--inputs-json", json.dumps(inputs(text))]
    return Proc(home, sync, args, [point])


def backdate_entry(home: Path, memo_key: str, hours: float) -> None:
    db = stores(home).db
    entry = action_cache.get(db, memo_key)
    assert entry is not None
    then = int((time.time() - hours * HOUR) * 1000)
    action_cache.put(db, entry.used_at(then))
    rec = executions.get(db, entry.execution_id)
    executions.record(db, rec.with_(started_ms=then))


def assert_store_sound(home: Path, cli: Cli, runs: list[dict[str, Any]]) -> None:
    """0 dangling cache entries, 0 lost outputs, verify clean."""
    s = stores(home)
    for memo_key, _ in s.db.items("ac"):
        entry = action_cache.get(s.db, memo_key)
        assert entry is not None
        assert all(s.cas.exists(c) for c in entry.blobs()), f"dangling cache entry {memo_key}"
    for body in runs:
        assert body["status"] == "success"
        for out in body["outputs"]:
            assert s.cas.exists(out["cid"]), f"lost output {out['path']}"
        assert action_cache.lookup(s.db, s.cas, body["memo_key"]) is not None
    res = cli("verify", "--json")
    report = json.loads(res.stdout)
    assert res.exit_code == 0 and report["missing"] == [] and report["corrupt"] == [], report
    assert list(s.cas.withdrawn()) == []


@pytest.mark.parametrize("release_at", ["gc_after_mark", "gc_after_withdraw"])
def test_gc_racing_four_writers_loses_nothing(home: Path, cli: Cli, tmp_path: Path, release_at: str) -> None:
    evicted, hit = run(home, "evicted"), run(home, "hit")
    for result in (evicted, hit):
        backdate_entry(home, result.memo_key, 3)
    doc = tmp_path / "doc.txt"
    doc.write_bytes(b"an attachment nothing names yet")
    garbage(home, 3)
    stores(home).cas.put_file(doc)
    age(home)
    close_all()
    sync = tmp_path / "sync"
    sync.mkdir()

    # W1 has prepared (nothing leased), W2 has leased and validated a hit of an entry gc evicts,
    # W3 has leased an attachment nothing else names, W4 has ingested outputs it has not recorded.
    w1 = writer(home, sync, "evicted", "after_prepare")
    w2 = writer(home, sync, "hit", "after_lookup")
    attach = {"messages": inputs("doc")["messages"], "attachments": [{"$attach": "doc"}]}
    w3 = writer(home, sync, "", "after_prepare", "--inputs-json", json.dumps(attach), "--attach", f"doc={doc}")
    w4 = writer(home, sync, "brand new", "before_record")
    for w, point in ((w1, "after_prepare"), (w2, "after_lookup"), (w3, "after_prepare"), (w4, "before_record")):
        w.reached(point)

    gc = Proc(home, sync, ["gc", "--json", "--grace", "0", "--max-age", "2h"], ["gc_after_mark", "gc_after_withdraw"])
    gc.reached("gc_after_mark")
    if release_at == "gc_after_withdraw":
        gc.go("gc_after_mark")
        gc.reached("gc_after_withdraw")
        assert not stores(home).cas.exists(evicted.record.action_cid or ""), "withdrawn: out of sight"
    for w, point in ((w1, "after_prepare"), (w2, "after_lookup"), (w4, "before_record")):
        w.go(point)
    bodies = [w1.result(), w2.result(), w4.result()]
    gc.go("gc_after_mark")
    gc.go("gc_after_withdraw")
    report = gc.result()
    w3.go("after_prepare")
    bodies.append(w3.result())

    assert report["reclaimed"]["count"] >= 3, report
    if release_at == "gc_after_mark":  # W1 and W2 used the entries gc meant to evict: they stay
        assert [b["cache"] for b in bodies] == ["hit", "hit", "miss", "miss"]
        assert report["cache_entries"]["evicted_by_age"] == 0 and report["executions"]["dropped"] == 0
    else:  # W1 found its entry gone and stored again what gc had withdrawn: it is put back
        assert [b["cache"] for b in bodies] == ["miss", "hit", "miss", "miss"]
        assert report["restored"]["count"] > 0
    assert_store_sound(home, cli, bodies)
    final = cli("gc", "--json", "--grace", "0")
    assert final.exit_code == 0
    assert_store_sound(home, cli, bodies)


def test_kill_9_during_gc_leaves_a_sound_store_and_the_lock_free(home: Path, cli: Cli, tmp_path: Path) -> None:
    kept = run(home, "kept")
    evicted = run(home, "evicted")
    backdate_entry(home, evicted.memo_key, 3)
    junk = garbage(home, 5)
    age(home)
    close_all()
    sync = tmp_path / "sync"
    sync.mkdir()
    gc = Proc(home, sync, ["gc", "--json", "--max-age", "2h"], ["gc_withdrawing"])
    gc.reached("gc_withdrawing")
    os.kill(gc.popen.pid, signal.SIGKILL)
    gc.popen.wait(30)
    assert len(list(stores(home).cas.withdrawn())) == 1

    res = cli("verify", "--json")
    assert res.exit_code == 0, res.stdout
    assert json.loads(res.stdout)["orphaned"]["withdrawn_by_interrupted_gc"] == 1
    again = run(home, "evicted")  # its entry is gone: re-executes, storing what gc had withdrawn
    assert again.cache == "miss"

    report = json.loads(cli("gc", "--json", "--max-age", "2h").stdout)
    assert report["recovered_from_interrupted_gc"] == 1
    present = set(blob_files(home))
    assert set(kept.record.blobs()) <= present and set(again.record.blobs()) <= present
    assert not junk & present
    bodies = [{"status": "success", "memo_key": r.memo_key, "outputs": [o.to_dict() for o in r.outputs]}
              for r in (kept, again)]
    assert_store_sound(home, cli, bodies)
