"""Single flight per memo key across processes: identical concurrent misses execute once.

"You never pay twice for the same call": N identical runs started together produce one
execution and N-1 hits of its result; the plan is charged once. If the executing process dies,
a waiter takes the flight over; ``--no-cache`` never waits.
"""

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
from theoryx_testing import REPO

from theoryx.store import flights
from theoryx.store.flights import Flight

SPEC = """\
ref: test/slow@1
description: Sleeps, then writes one output and reports a cost of one dollar.
image:
  ref: example.invalid/slow@sha256:{zeros}
runtime: {{timeout: 120}}
cost: {{usd: 1}}
inputs:
  type: object
  properties:
    i: {{type: integer}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""
MOCK = """\
import os, time

def run(inputs, outdir, ctx):
    time.sleep(float(os.environ.get("SLOW_SECONDS", "1.5")))
    (outdir / "out.txt").write_text("done %s" % inputs.get("i"))
    return {"cost_usd": 1.0}
"""


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    folder = root / "processors" / "test" / "slow"
    folder.mkdir(parents=True)
    (root / "processors" / "test" / "slow@1.yaml").write_text(SPEC.format(zeros="0" * 64))
    (folder / "mock.py").write_text(MOCK)
    return root


def spawn(home: Path, registry: Path, *extra: str, seconds: float = 1.5) -> subprocess.Popen[str]:
    env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(registry), SLOW_SECONDS=str(seconds))
    return subprocess.Popen(
        [sys.executable, "-m", "theoryx", "run", "--json", "--adapter", "mock", "--ref", "test/slow@1",
         "--inputs-json", json.dumps({"i": 1}), *extra],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    body: dict[str, object] = json.loads(out)
    return body


def plan_spent(home: Path, registry: Path, plan: str) -> int:
    proc = subprocess.run([sys.executable, "-m", "theoryx", "--home", str(home), "--registry", str(registry),
                           "plan", "show", plan, "--json"], capture_output=True, text=True, cwd=REPO, check=True)
    spent: int = json.loads(proc.stdout)["spent_micros"]
    return spent


@pytest.mark.slow
def test_eight_identical_concurrent_runs_execute_once_and_pay_once(tmp_path: Path, registry: Path) -> None:
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "theoryx", "--home", str(home), "plan", "create", "team", "--limit-usd",
                    "5"], check=True, cwd=REPO, capture_output=True)
    procs = [spawn(home, registry, "--plan", "team") for _ in range(8)]
    results = [finish(p) for p in procs]
    caches = sorted(str(r["cache"]) for r in results)
    executions = caches.count("miss")
    print(f"8 concurrent identical runs -> {executions} execution(s), {caches.count('hit')} hit(s)")
    assert executions == 1, caches
    assert len({r["memo_key"] for r in results}) == 1
    assert len({json.dumps(r["outputs"]) for r in results}) == 1
    assert plan_spent(home, registry, "team") == 1_000_000
    assert not flights.held(home, str(results[0]["memo_key"]))  # no flight outlives its run


@pytest.mark.slow
def spawn_in_flight(tmp_path: Path, registry: Path, seconds: float) -> tuple[Path, subprocess.Popen[str]]:
    """A run in ``<tmp_path>/home`` that sleeps ``seconds``, returned once it holds its flight.
    Its memo key comes from the same run first done in a home of its own (keys do not depend on
    the home)."""
    key = str(finish(spawn(tmp_path / "home-for-the-key", registry, seconds=0))["memo_key"])
    home = tmp_path / "home"
    proc = spawn(home, registry, seconds=seconds)
    deadline = time.monotonic() + 30
    while not flights.held(home, key):
        assert time.monotonic() < deadline, "the first run never took its flight"
        time.sleep(0.05)
    return home, proc


@pytest.mark.slow
def test_a_waiter_takes_over_when_the_executing_process_dies(tmp_path: Path, registry: Path) -> None:
    home, first = spawn_in_flight(tmp_path, registry, seconds=60)
    waiter = spawn(home, registry, seconds=0.2)
    time.sleep(1.0)
    assert waiter.poll() is None  # it waits for the flight in the air
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    body = finish(waiter)
    assert body["cache"] == "miss"  # it executed itself: nothing was cached by the dead one


@pytest.mark.slow
def test_no_cache_never_waits_for_a_flight(tmp_path: Path, registry: Path) -> None:
    home, first = spawn_in_flight(tmp_path, registry, seconds=30)
    t0 = time.monotonic()
    body = finish(spawn(home, registry, "--no-cache", seconds=0.1))
    assert body["cache"] == "bypass"   # executed without a lookup
    assert first.poll() is None, "the --no-cache run must not have waited for the first to finish"
    first.kill()
    first.wait(timeout=30)
    print(f"--no-cache answered in {time.monotonic() - t0:.2f} s while the flight was in the air")


def test_a_flight_excludes_a_second_holder_and_leaves_no_file(tmp_path: Path) -> None:
    import threading

    order: list[str] = []

    def second() -> None:
        with Flight(tmp_path, "b3:" + "a" * 64):
            order.append("second")

    with Flight(tmp_path, "b3:" + "a" * 64):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(timeout=10)
    assert order == ["first done", "second"]
    with Flight(tmp_path, "b3:" + "b" * 64):  # another key never waits
        pass


@pytest.mark.skipif(not flights.OFD_LOCKS, reason="flights are files of their own without OFD locks")
def test_a_flight_creates_and_removes_no_file(tmp_path: Path) -> None:
    key = "b3:" + "c" * 64
    with Flight(tmp_path, key):
        pass                                       # the lock file is made once
    lock = tmp_path / flights.DIRNAME / flights.LOCK_FILE
    assert sorted(tmp_path.rglob("*")) == [lock.parent, lock]
    inode = lock.stat().st_ino
    for _ in range(3):
        assert not flights.held(tmp_path, key)
        with Flight(tmp_path, key):
            assert flights.held(tmp_path, key)
            assert sorted(tmp_path.rglob("*")) == [lock.parent, lock]
    assert not flights.held(tmp_path, key)
    assert lock.stat().st_ino == inode             # the same file throughout


def test_a_flight_is_held_across_processes_and_dropped_when_its_holder_dies(tmp_path: Path) -> None:
    key = "b3:" + "d" * 64
    code = ("import sys, time; from pathlib import Path; from theoryx.store.flights import Flight; "
            f"f = Flight(Path({str(tmp_path)!r}), {key!r}); f.acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert flights.held(tmp_path, key)
        assert not flights.held(tmp_path, "b3:" + "e" * 64)       # another key is free
        with Flight(tmp_path, "b3:" + "e" * 64):
            pass
        holder.kill()
        holder.wait(timeout=30)
        t0 = time.monotonic()
        with Flight(tmp_path, key):                                  # the kernel dropped it
            assert time.monotonic() - t0 < 5
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_offsets_are_60_bits_of_the_key() -> None:
    assert flights.offset("b3:" + "f" * 64) == (1 << 60) - 1
    assert flights.offset("b3:" + "0" * 64) == 0
    assert flights.offset("b3:0123456789abcdef" + "0" * 48) == 0x0123456789abcde


@pytest.mark.skipif(not flights.OFD_LOCKS, reason="flights are files of their own without OFD locks")
def test_an_unwritable_lock_file_is_a_clear_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.errors import StoreError

    with Flight(tmp_path, "b3:" + "a" * 64):
        pass
    real_open = os.open

    def denied(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(flights.LOCK_FILE):    # as for a group member the owner's umask locked out
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(StoreError) as caught:
        Flight(tmp_path, "b3:" + "a" * 64).acquire()
    assert caught.value.code == "ERR_STORE"
    assert "umask 002" in caught.value.message and "chmod g+w" in caught.value.message
