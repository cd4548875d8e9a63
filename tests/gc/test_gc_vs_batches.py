"""gc with grace 0 while a batch's miss is in flight: the item's workspace lives under the batch's
held lease (``work-v1/<batch lease>/<execution id>``), so gc keeps it and the item succeeds; the
batch removes its directory when it ends."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from theoryx_testing import REGISTRY

import theoryx
from theoryx.store.gc.collect import collect
from theoryx.store.handle import open_stores


def test_gc_grace_0_keeps_the_workspace_of_a_batch_item_in_flight(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home, sync = tmp_path / "home", tmp_path / "sync"
    sync.mkdir()
    monkeypatch.setenv("THEORYX_SYNC_DIR", str(sync))
    monkeypatch.setenv("THEORYX_SYNC_POINTS", "before_execute")
    results: list[object] = []
    items = [{"inputs": {"messages": [{"role": "user", "content": "in flight"}]}}]

    def batch() -> None:
        with theoryx.Session(home, registry=str(REGISTRY)) as s:
            results.extend(s.map("llm/litellm@1", items, adapter="mock", jobs=1))

    worker = threading.Thread(target=batch)
    worker.start()
    deadline = time.monotonic() + 60
    while not list(sync.glob("before_execute.*.reached")):
        assert time.monotonic() < deadline, "the item never reached before_execute"
        time.sleep(0.02)
    spaces = [p for p in (home / "work-v1").rglob("*") if p.is_dir() and p.parent.parent == home / "work-v1"]
    assert len(spaces) == 1, "one item workspace, inside the batch's directory"
    report = collect(open_stores(home), grace_s=0, max_age_s=0, max_size=0)
    print(f"gc at grace 0 with the item in flight: removed {report.to_dict().get('workspaces', '?')}")
    assert spaces[0].is_dir(), "gc removed the workspace of a batch item in flight"
    (sync / "before_execute.go").touch()
    worker.join(60)
    assert [getattr(r, "ok", None) for r in results] == [True]
    assert list((home / "work-v1").iterdir()) == [], "the batch removed its directory"
