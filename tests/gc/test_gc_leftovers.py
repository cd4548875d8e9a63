"""Issue 10, defect 10: what a run killed with ``kill -9`` leaves — its workspace
``work-v1/<id>/`` and lease temp files — is reported by ``verify`` and ``du`` and removed by
``gc`` once past the grace period; the workspace of a run still in flight never is."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from pathlib import Path

from gc_support import inputs, stores
from test_gc_races import writer
from theoryx_testing import Cli

from theoryx.store.gc import collect as gc


def workspaces(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "work-v1").iterdir())


def test_a_killed_runs_workspace_is_reported_then_removed_and_a_live_ones_never(
        home: Path, cli: Cli, tmp_path: Path) -> None:
    stores(home)
    sync = tmp_path / "sync"
    sync.mkdir()
    # An attachment, so that the workspace holds bytes (the mock's own workspace is empty dirs).
    doc = tmp_path / "doc.txt"
    doc.write_bytes(b"an attachment of the run that gets killed")
    attach = {"messages": inputs("killed mid-execution")["messages"], "attachments": [{"$attach": "doc"}]}
    killed = writer(home, sync, "", "before_execute", "--inputs-json", json.dumps(attach), "--attach", f"doc={doc}")
    killed.reached("before_execute")
    [dead] = workspaces(home)
    os.kill(killed.popen.pid, signal.SIGKILL)
    killed.popen.wait(30)
    live = writer(home, sync, "still running", "before_execute")
    live.reached("before_execute")
    assert len(workspaces(home)) == 2

    du = json.loads(cli("du", "--json").stdout)
    res = cli("verify", "--json")
    report = json.loads(res.stdout)
    assert report["orphaned"]["abandoned_workspaces"]["count"] == 1, report["orphaned"]
    assert du["abandoned_workspaces"]["count"] == 1 and du["abandoned_workspaces"]["bytes"] > 0
    assert res.exit_code == 0, "a leftover is not corruption"

    kept = gc.collect(stores(home), grace_s=3600)
    assert kept.workspaces.count == 0 and dead in workspaces(home), "younger than the grace: kept"
    removed = json.loads(cli("gc", "--json", "--grace", "0").stdout)
    print(f"kill -9 mid-execution: workspaces left {1}, removed by gc --grace 0: "
          f"{removed['workspaces']['count']}; live workspace kept: {len(workspaces(home)) == 1}")
    assert removed["workspaces"]["count"] == 1
    assert dead not in workspaces(home) and len(workspaces(home)) == 1, "the live run's workspace stays"

    live.go("before_execute")
    assert live.result()["status"] == "success"
    assert workspaces(home) == []
    after = json.loads(cli("verify", "--json").stdout)
    assert after["clean"] and after["orphaned"]["abandoned_workspaces"]["count"] == 0


def test_lease_temp_files_of_killed_runs_go_and_one_being_born_stays(home: Path, cli: Cli) -> None:
    s = stores(home)
    debris = s.home.leases / ".01m8q1az8dhx4ce898q58ps0wc.4242.tmp"
    debris.write_text("")
    old = time.time() - 120
    os.utime(debris, (old, old))
    newborn = s.home.leases / ".01m8q1az8dhx4ce898q58ps0wd.4343.tmp"
    fd = os.open(newborn, os.O_CREAT | os.O_WRONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)           # locked by its (live) creator
    os.utime(newborn, (old, old))
    try:
        assert json.loads(cli("du", "--json").stdout)["lease_temp_files"]["count"] == 1
        assert json.loads(cli("verify", "--json").stdout)["orphaned"]["lease_temp_files"] == 1
        assert gc.collect(s, grace_s=3600).lease_temp_files == 0 and debris.exists()
        report = json.loads(cli("gc", "--json", "--grace", "0").stdout)
        print(f"lease temp files: removed {report['lease_temp_files_removed']}, held one kept")
        assert report["lease_temp_files_removed"] == 1 and not debris.exists() and newborn.exists()
    finally:
        os.close(fd)


def test_an_unheld_lease_temp_younger_than_the_stale_floor_stays_at_grace_0(home: Path) -> None:
    """Between its creation and its flock a lease temp is unheld: grace 0 must not take it."""
    s = stores(home)
    young = s.home.leases / ".01m8q1az8dhx4ce898q58ps0we.99.tmp"
    young.write_text("")
    assert gc.collect(s, grace_s=0).lease_temp_files == 0 and young.exists()


