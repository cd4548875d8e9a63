"""Issue 10, defect 3: runs in other processes against a gc that never stops and keeps nothing it
may drop (grace 0, max-size 0, max-age 0). Every run must win — succeed, with its result
recorded — or fail with a typed theoryx error and one JSON envelope; here none may fail, no
traceback may appear, and ``verify`` is clean afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gc_support import inputs
from theoryx_testing import REPO, Cli, subprocess_env

THEORYX = [sys.executable, "-m", "theoryx"]
RUN_FOR_S = 20.0
PARALLEL = 3

# One gc after another, in one process (faster than `theoryx gc` per pass, so more interleavings),
# until the stop file appears; prints how many passes it made and what they reclaimed.
GC_LOOP = """
import json, sys, time
from pathlib import Path
from theoryx.store.gc.collect import collect
from theoryx.store.handle import open_stores
stores, stop = open_stores(sys.argv[1]), Path(sys.argv[2])
passes = reclaimed = 0
while not stop.exists():
    report = collect(stores, grace_s=0, max_age_s=0, max_size=0)
    passes += 1
    reclaimed += report.reclaimed.count
print(json.dumps({"passes": passes, "reclaimed": reclaimed}))
"""


def _run_args(i: int, doc: Path, save: Path) -> list[str]:
    """A mix: repeated keys (hits, or misses after gc evicted them), fresh keys, attachments, and
    --save-dir (which reads the outputs back)."""
    args = ["run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1"]
    if i % 4 == 3:
        body = {"messages": inputs(f"doc {i % 3}")["messages"], "attachments": [{"$attach": "doc"}]}
        args += ["--inputs-json", json.dumps(body), "--attach", f"doc={doc}"]
    else:
        args += ["--inputs-json", json.dumps(inputs(f"text {i % 5 if i % 2 else i}"))]
    if i % 3 == 0:
        args += ["--save-dir", str(save / str(i))]
    return args


@pytest.mark.slow
def test_runs_against_a_relentless_gc_all_win_and_the_store_verifies(home: Path, cli: Cli, tmp_path: Path) -> None:
    from theoryx.store.handle import open_stores

    open_stores(home)
    doc, save, stop = tmp_path / "doc.txt", tmp_path / "save", tmp_path / "stop"
    doc.write_text("an attachment")
    env = subprocess_env(home)
    gc = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(home), str(stop)], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failures: list[str] = []
    caches: dict[str, int] = {}
    runs = 0
    running: list[subprocess.Popen[str]] = []

    def reap(proc: subprocess.Popen[str]) -> None:
        out, err = proc.communicate(timeout=120)
        lines = out.splitlines()
        body = json.loads(lines[0]) if len(lines) == 1 else None
        if proc.returncode != 0 or body is None or body.get("status") != "success" or "Traceback" in err:
            failures.append(f"exit {proc.returncode}: {out[-400:]} {err[-1500:]}")
        else:
            caches[body["cache"]] = caches.get(body["cache"], 0) + 1

    try:
        deadline = time.monotonic() + RUN_FOR_S
        while time.monotonic() < deadline:
            running.append(subprocess.Popen([*THEORYX, *_run_args(runs, doc, save)], env=env, cwd=REPO,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            runs += 1
            if len(running) >= PARALLEL:
                reap(running.pop(0))
        for proc in running:
            reap(proc)
    finally:
        stop.touch()
        gc_out, gc_err = gc.communicate(timeout=120)
    assert gc.returncode == 0, gc_err
    passes = json.loads(gc_out)
    res = cli("verify", "--json")
    report = json.loads(res.stdout)
    print(f"gc vs runs: {runs} runs ({caches}), {len(failures)} failed; gc passes {passes['passes']}, "
          f"blobs reclaimed {passes['reclaimed']}; verify clean: {report['clean']}")
    assert not failures, f"{len(failures)} of {runs} runs failed; first: {failures[0]}"
    assert passes["passes"] >= 10 and passes["reclaimed"] > 0, passes
    assert res.exit_code == 0 and report["clean"], report
    assert report["orphaned"]["temp_files"] == 0 and report["orphaned"]["withdrawn_by_interrupted_gc"] == 0


def test_a_blob_a_run_in_flight_wrote_before_leasing_it_survives_grace_0(home: Path) -> None:
    """A run lists what it writes only after hashing it (outputs, logs, receipt, index): in that
    moment nothing but the run's start protects the blob. gc keeps every blob written since the
    oldest run in flight began; once the run is gone the blob is garbage like any other."""
    from cas.staging import TempFile
    from theoryx.core.ids import new_execution_id
    from theoryx.store.gc.collect import collect
    from theoryx.store.handle import open_stores
    from theoryx.store.leases import Lease

    stores = open_stores(home)
    old = stores.cas.put_bytes(b"garbage from before the run")
    then = time.time() - 3600
    os.utime(stores.cas.path(old.cid), (then, then))
    with Lease(stores.home.leases, new_execution_id()):
        written = stores.cas.put_bytes(b"an output the run has not listed yet")
        with TempFile.create(stores.cas.root / "tmp") as temp:  # a write still in progress
            report = collect(stores, grace_s=0, max_age_s=0, max_size=0)
            assert temp.path.exists(), "a temp file in use is never removed"
        assert stores.cas.exists(written.cid), "written during a run in flight: kept"
        assert not stores.cas.exists(old.cid)
        assert report.kept_leased.count == 1 and report.reclaimed.count == 1
    after = collect(stores, grace_s=0)
    print(f"in flight: kept {report.kept_leased.count}, reclaimed {report.reclaimed.count}; "
          f"after the run: reclaimed {after.reclaimed.count}")
    assert not stores.cas.exists(written.cid) and after.reclaimed.count == 1


def test_a_cid_another_thread_is_leasing_counts_as_leased_only_once_it_is_in_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's threads share one lease. While one thread is still writing a cid's line, another
    adding the same cid must wait for that line (gc reads the file), not return at once."""
    import threading

    from theoryx.store import leases

    cid = "b3:" + "ab" * 32
    writing, release = threading.Event(), threading.Event()
    real_write = leases.os.write

    def slow_write(fd: int, data: bytes) -> int:
        writing.set()
        assert release.wait(10)
        return real_write(fd, data)

    lease = leases.Lease(tmp_path, "owner")
    monkeypatch.setattr(leases.os, "write", slow_write)
    first = threading.Thread(target=lease.add, args=([cid],))
    first.start()
    assert writing.wait(10)
    monkeypatch.setattr(leases.os, "write", real_write)
    second = threading.Thread(target=lease.add, args=([cid],))
    second.start()
    second.join(0.3)
    assert second.is_alive(), "the second add returned before the first one's line was written"
    release.set()
    first.join(10)
    second.join(10)
    assert lease.path.read_text() == f"{cid}\n"
    lease.release()
