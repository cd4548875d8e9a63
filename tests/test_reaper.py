"""The batch's reaper: misses' workspaces removed on a background thread, all gone at close."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from theoryx_testing import HELLO, REGISTRY

from theoryx.pipeline import reaper as reaper_module
from theoryx.pipeline.reaper import Reaper
from theoryx.pipeline.session import Session


def workspace(root: Path, name: str) -> Path:
    ws = root / name
    (ws / "outputs" / "deep").mkdir(parents=True)
    (ws / "outputs" / "deep" / "f.txt").write_text("x")
    (ws / "inputs.json").write_text("{}")
    (ws / "outputs").chmod(0o500)          # read-only parts, as a container may leave them
    return ws


def test_every_workspace_handed_over_is_gone_after_close(tmp_path: Path) -> None:
    reaper = Reaper(bound=2)
    spaces = [workspace(tmp_path, f"w{i}") for i in range(10)]
    for ws in spaces:
        reaper.discard(ws)
    reaper.close()
    assert not any(ws.exists() for ws in spaces) and reaper.failures == 0
    reaper.close()                          # closing twice is harmless; a closed reaper can start again
    again = workspace(tmp_path, "again")
    reaper.discard(again)
    reaper.close()
    assert not again.exists()


def test_a_full_queue_makes_the_run_wait_for_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, removed = threading.Event(), []

    def slow_remove(path: Path) -> None:
        gate.wait(10)
        removed.append(path)

    monkeypatch.setattr(reaper_module, "remove_tree", slow_remove)
    reaper = Reaper(bound=1)
    reaper.discard(tmp_path / "a")          # taken by the thread, which blocks in the removal
    reaper.discard(tmp_path / "b")          # waits in the queue (bound 1)
    third = threading.Thread(target=reaper.discard, args=(tmp_path / "c",))
    third.start()
    third.join(0.3)
    assert third.is_alive()                 # blocked: the queue is full
    gate.set()
    third.join(10)
    reaper.close()
    assert removed == [tmp_path / "a", tmp_path / "b", tmp_path / "c"]


def test_a_removal_that_fails_is_counted_and_the_rest_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = reaper_module.remove_tree

    def flaky(path: Path) -> None:
        if path.name == "bad":
            raise PermissionError(13, "denied", str(path))
        real(path)

    monkeypatch.setattr(reaper_module, "remove_tree", flaky)
    reaper = Reaper()
    good = workspace(tmp_path, "good")
    reaper.discard(tmp_path / "bad")
    reaper.discard(good)
    reaper.close()
    assert reaper.failures == 1 and not good.exists()


def test_a_batch_of_misses_leaves_no_workspace(tmp_path: Path) -> None:
    home = tmp_path / "home"
    items = [{"inputs": {**HELLO, "messages": [{"role": "user", "content": str(i)}]}} for i in range(40)]
    with Session(home, registry=str(REGISTRY)) as session:
        results = list(session.map("llm/litellm@1", items, adapter="mock", jobs=2))
        work = session.stores.home.work
    assert all(r.ok for r in results) and {r.result.cache for r in results if r.result} == {"miss"}
    assert not work.exists() or list(work.iterdir()) == []
