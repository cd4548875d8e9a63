"""8 processes x 8 runs racing one limited plan: never overshot, exactly what fits is admitted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from plans_testing import ESTIMATE, db_of, prefix_totals_within_limit
from theoryx_testing import REPO, subprocess_env

from theoryx.budget import ledger, plans

PROCESSES = 8
RUNS = 8
LIMIT = 5_300_000           # $5.30: 21 runs of $0.25 fit, the 22nd does not

WORKER = """
import json, sys, time
from pathlib import Path
import theoryx
from theoryx.errors import TheoryxError

home, registry, worker, runs, cost, go = sys.argv[1:]
while not Path(go).exists():
    time.sleep(0.001)
for j in range(int(runs)):
    try:
        r = theoryx.run("test/costly@1", inputs={"i": int(worker) * 1000 + j}, adapter="mock", plan="race",
                    home=home, registry=registry, adapter_options={"cost_usd": float(cost)})
        print(json.dumps({"ok": True, "cache": r.cache, "cost": r.record.cost_micros}), flush=True)
    except TheoryxError as exc:
        print(json.dumps({"ok": False, "code": exc.code, "message": exc.message}), flush=True)
"""


def race(home: Path, registry: Path, tmp_path: Path, cost_usd: float) -> list[dict[str, Any]]:
    """Start every worker, let them go at once, and collect one JSON line per run."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(home), str(registry), str(w), str(RUNS),
                               str(cost_usd), str(go)], env=subprocess_env(home), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(PROCESSES)]
    go.touch()
    lines: list[dict[str, Any]] = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        lines += [json.loads(line) for line in out.splitlines()]
    assert len(lines) == PROCESSES * RUNS
    return lines


@pytest.fixture
def limited(home: Path, registry: Path) -> Path:
    from theoryx.store.handle import open_stores

    plans.create(open_stores(home).db, "race", LIMIT)
    return home


def check_ledger(home: Path) -> list[dict[str, Any]]:
    db = db_of(home)
    events = [e for _, e in ledger.events(db, "race")]
    assert prefix_totals_within_limit(events)            # overshoot 0 at every moment
    assert plans.verify(db, "race") == plans.get(db, "race").totals
    return events


def test_racing_processes_admit_exactly_what_fits(limited: Path, registry: Path, tmp_path: Path) -> None:
    lines = race(limited, registry, tmp_path, cost_usd=0.25)
    admitted = [r for r in lines if r["ok"]]
    refused = [r for r in lines if not r["ok"]]
    assert len(admitted) == LIMIT // ESTIMATE == 21
    assert all(r["cache"] == "miss" and r["cost"] == ESTIMATE for r in admitted)
    assert {r["code"] for r in refused} == {"ERR_BUDGET_EXCEEDED"}
    assert all("plan 'race'" in r["message"] and "limit $5.300000" in r["message"] for r in refused)
    p = plans.get(db_of(limited), "race").totals
    assert (p.spent_micros, p.reserved_micros, p.executions) == (21 * ESTIMATE, 0, 21)
    assert p.spent_micros <= LIMIT
    events = check_ledger(limited)
    assert sum(e["kind"] == "reserve" for e in events) == sum(e["kind"] == "settle" for e in events) == 21


def test_racing_processes_with_actual_below_estimate_never_overshoot(
    limited: Path, registry: Path, tmp_path: Path
) -> None:
    lines = race(limited, registry, tmp_path, cost_usd=0.1)
    admitted = [r for r in lines if r["ok"]]
    assert len(admitted) >= LIMIT // ESTIMATE
    assert {r["code"] for r in lines if not r["ok"]} <= {"ERR_BUDGET_EXCEEDED"}
    p = plans.get(db_of(limited), "race").totals
    assert p.spent_micros == len(admitted) * 100_000 <= LIMIT and p.reserved_micros == 0
    if len(admitted) < len(lines):       # a refusal: the estimate no longer fitted at that moment
        assert p.spent_micros + ESTIMATE > LIMIT - (PROCESSES - 1) * ESTIMATE
    check_ledger(limited)
