"""Group commit of a batch's miss records (theoryx.pipeline.recorder.GroupRecorder.commit):
durable before the call returns, shared with the records that arrive while a commit runs, and
a failed transaction is raised in every caller whose record it carried — and only in those."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import REGISTRY

import theoryx
from theoryx.pipeline import recorder
from theoryx.pipeline.recorder import GroupRecorder
from theoryx.store import executions
from theoryx.store.executions import Recording
from theoryx.store.handle import open_stores


class Gate:
    """A stand-in for executions.record_many whose first transaction waits until ``release``."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.groups: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, db: Any, recordings: list[Recording]) -> None:
        self.groups.append([r.rec for r in recordings])  # type: ignore[misc]
        if len(self.groups) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if self.fail_on == len(self.groups):
            raise OSError("disk full")


def _commit_all(rec: GroupRecorder, names: list[str]) -> dict[str, BaseException | None]:
    outcome: dict[str, BaseException | None] = {}

    def one(name: str) -> None:
        try:
            rec.commit(Recording(name))  # type: ignore[arg-type]
            outcome[name] = None
        except BaseException as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return outcome


def _start_first(rec: GroupRecorder, gate: Gate) -> tuple[threading.Thread, dict[str, BaseException | None]]:
    first: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            rec.commit(Recording("first"))  # type: ignore[arg-type]
            first["first"] = None
        except BaseException as exc:
            first["first"] = exc

    t = threading.Thread(target=run)
    t.start()
    assert gate.entered.wait(10)
    return t, first


def _waiting(rec: GroupRecorder, n: int) -> None:
    for _ in range(1000):
        with rec._cond:
            if len(rec._queue) == n:
                return
        threading.Event().wait(0.01)
    raise AssertionError("the records did not queue")


def test_records_arriving_during_a_commit_share_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate()
    monkeypatch.setattr(executions, "record_many", gate)
    rec = GroupRecorder(db=None)  # type: ignore[arg-type]
    first_thread, first = _start_first(rec, gate)
    threads_done: dict[str, BaseException | None] = {}
    waiter = threading.Thread(target=lambda: threads_done.update(_commit_all(rec, ["a", "b", "c"])))
    waiter.start()
    _waiting(rec, 3)
    assert threads_done == {}, "nobody returns before their record is committed"
    gate.release.set()
    first_thread.join(10)
    waiter.join(10)
    assert first == {"first": None} and threads_done == {"a": None, "b": None, "c": None}
    assert gate.groups[0] == ["first"] and sorted(gate.groups[1]) == ["a", "b", "c"] and len(gate.groups) == 2
    assert rec.commits == 2


def test_a_failed_commit_is_raised_in_each_of_its_callers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(fail_on=2)
    monkeypatch.setattr(executions, "record_many", gate)
    rec = GroupRecorder(db=None)  # type: ignore[arg-type]
    first_thread, first = _start_first(rec, gate)
    done: dict[str, BaseException | None] = {}
    waiter = threading.Thread(target=lambda: done.update(_commit_all(rec, ["a", "b"])))
    waiter.start()
    _waiting(rec, 2)
    gate.release.set()
    first_thread.join(10)
    waiter.join(10)
    assert first == {"first": None}
    assert set(done) == {"a", "b"} and all(isinstance(e, OSError) for e in done.values())
    rec.commit(Recording("later"))  # type: ignore[arg-type]
    assert gate.groups[-1] == ["later"] and rec._failed == {}


def test_a_batch_of_misses_records_every_miss_and_its_cache_entry(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[GroupRecorder] = []
    real_init = GroupRecorder.__init__

    def init(self: GroupRecorder, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(recorder.GroupRecorder, "__init__", init)
    home = tmp_path / "home"
    items = [{"inputs": {"messages": [{"role": "user", "content": str(i)}]}} for i in range(30)]
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        results = list(s.map("llm/litellm@1", items, adapter="mock", jobs=4))
    assert all(r.result is not None and r.result.cache == "miss" for r in results)
    assert 1 <= made[0].commits <= 30
    db = open_stores(home).db
    assert all(executions.find(db, r.result.execution_id) is not None for r in results if r.result)
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        again = list(s.map("llm/litellm@1", items, adapter="mock", jobs=4))
    assert [r.result.cache for r in again if r.result] == ["hit"] * 30
