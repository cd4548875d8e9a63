"""kill -9 between reserve and settle: the reservation keeps counting until reconcile, which
releases it exactly once and never touches a live run's reservation."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from plans_testing import ESTIMATE, cli_args, db_of, prefix_totals_within_limit, run_costly
from theoryx_testing import REPO, subprocess_env

from theoryx.budget import ledger, plans
from theoryx.errors import BudgetExceeded


def paused_run(home: Path, registry: Path, sync: Path, i: int) -> tuple[subprocess.Popen[str], str]:
    """Start ``theoryx run`` and wait until it has reserved and stops before executing; returns
    the process and its execution id (from its reservation)."""
    env = subprocess_env(home, THEORYX_SYNC_DIR=str(sync), THEORYX_SYNC_POINTS="before_execute")
    before = {r.execution_id for r in plans.reservations(db_of(home))}
    proc = subprocess.Popen(cli_args(registry, "p", i), env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    reached = sync / f"before_execute.{proc.pid}.reached"
    deadline = time.monotonic() + 60
    while not reached.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached before_execute"
        time.sleep(0.01)
    (new,) = {r.execution_id for r in plans.reservations(db_of(home))} - before
    return proc, new


@pytest.fixture
def sync(tmp_path: Path) -> Path:
    d = tmp_path / "sync"
    d.mkdir()
    return d


@pytest.fixture
def plan_p(home: Path, registry: Path) -> Path:
    run_costly(home, registry, 0, plan=None)                     # opens the home
    plans.create(db_of(home), "p", 2 * ESTIMATE)
    return home


def test_kill_between_reserve_and_settle_then_reconcile(plan_p: Path, registry: Path, sync: Path) -> None:
    home, db = plan_p, db_of(plan_p)
    proc, killed = paused_run(home, registry, sync, 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    p = plans.get(db, "p").totals
    assert (p.spent_micros, p.reserved_micros) == (0, ESTIMATE)       # fail closed: still counted
    plans.verify(db, "p")
    run_costly(home, registry, 2)                                     # fits beside it ...
    with pytest.raises(BudgetExceeded) as info:                       # ... a third does not
        run_costly(home, registry, 3)
    assert f"reserved ${ESTIMATE / 1e6:.6f}" in info.value.message

    done = plans.reconcile(db, "p", home / "leases")
    assert [r.execution_id for r in done.released] == [killed] and done.held == ()
    assert plans.reconcile(db, "p", home / "leases").released == ()        # idempotent
    assert plans.settle(db, killed, ESTIMATE, status="success") is None    # a late settle charges nothing

    p = plans.get(db, "p").totals
    assert (p.spent_micros, p.reserved_micros, p.executions) == (ESTIMATE, 0, 2)
    events = [e for _, e in ledger.events(db, "p")]
    about_killed = [e["kind"] for e in events if e.get("execution_id") == killed]
    assert about_killed == ["reserve", "release"]                           # never charged
    assert prefix_totals_within_limit(events)
    assert plans.verify(db, "p") == p
    run_costly(home, registry, 3)                                     # the released room is usable again


def test_reconcile_leaves_a_live_runs_reservation_alone(plan_p: Path, registry: Path, sync: Path) -> None:
    home, db = plan_p, db_of(plan_p)
    proc, live = paused_run(home, registry, sync, 1)
    try:
        done = plans.reconcile(db, "p", home / "leases")
        assert done.released == () and [r.execution_id for r in done.held] == [live]
    finally:
        (sync / f"before_execute.{proc.pid}.go").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["execution_id"] == live
    p = plans.get(db, "p").totals
    assert (p.spent_micros, p.reserved_micros) == (ESTIMATE, 0)
    assert plans.verify(db, "p") == p


def test_reconcile_through_the_cli(plan_p: Path, registry: Path, sync: Path) -> None:
    from plans_testing import theoryx

    proc, killed = paused_run(plan_p, registry, sync, 1)
    proc.kill()
    proc.wait(timeout=30)
    res = theoryx(plan_p, "plan", "reconcile", "p")
    assert res.returncode == 0 and f"released {killed} $0.250000" in res.stdout
    verified = theoryx(plan_p, "plan", "ledger", "p", "--verify")
    assert verified.returncode == 0, verified.stderr
    assert "release" in verified.stdout
