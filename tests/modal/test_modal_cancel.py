"""Cancelling a batch on the modal adapter (Ctrl-C on ``theoryx map --adapter modal``): the
Sandboxes of items in flight are terminated at once, their items end with ERR_CANCELLED and are
charged the seconds their Sandbox lived; no Sandbox is left."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import theoryx
from theoryx.pipeline.batch import Batch

pytestmark = pytest.mark.docker


@pytest.mark.slow
def test_cancelling_a_modal_batch_terminates_its_sandboxes(registry: Path, home: Path, emulator: Any) -> None:
    holder: list[Batch] = []
    items = [{"inputs": {"mode": "sleep", "seconds": 45, "n": i}} for i in range(12)]
    cancelled_at: list[float] = []

    def cancel_when_two_sleep() -> None:
        deadline = time.monotonic() + 240
        while len([sb for sb in emulator.sandboxes if sb.ended is None]) < 2 or not emulator.called("Sandbox.exec"):
            assert time.monotonic() < deadline, "two Sandboxes never ran"
            time.sleep(0.1)
        time.sleep(1.0)                      # the processors are sleeping now
        cancelled_at.append(time.monotonic())
        holder[0].cancel()

    with theoryx.Session(home, registry=str(registry)) as session:
        results = session.map("test/probe@1", items, jobs=2, adapter="modal", plan="p", batch=holder)
        threading.Thread(target=cancel_when_two_sleep, daemon=True).start()
        got = list(results)
    elapsed = time.monotonic() - cancelled_at[0]
    codes = [r.error.code if r.error else "ok" for r in got]
    print(f"cancelled; all ended {elapsed:.1f} s later: {codes}; "
          f"{len(emulator.called('Sandbox.create'))} Sandboxes created")
    assert 2 <= len(codes) < 12 and set(codes) == {"ERR_CANCELLED"}, codes
    assert elapsed < 20, "terminated, not waited for (each item sleeps 45 s)"
    assert emulator.sandboxes == [] or all(sb.ended is not None for sb in emulator.sandboxes)
    charged = [r.error for r in got if r.error is not None]
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    records = {r.execution_id: r for r in executions.records(open_stores(home).db)}
    costs = [records[e.execution_id].cost_micros for e in charged if e.execution_id in records]
    assert any(costs), "an item whose Sandbox lived is charged for it"
