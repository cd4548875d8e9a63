"""Review 1, defect 2: a FIFO, a symbolic link or a directory where a blob or a lease file
belongs. ``verify`` and ``verify --repair`` hung forever on a FIFO named like a blob (a blocking
``open``), and read a link's target; every ``gc`` hung on a FIFO named ``leases/<id>.lease``, and
failed with ``ERR_INTERNAL`` on a directory of that name. Now nothing blocks: such a thing in a
blob's place is reported corrupt by ``verify`` and removed by ``--repair``, and a stray in a
lease's place is removed by gc (links are removed, never followed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gc_support import run, stores

import theoryx
from cas import CorruptBlob, Store

NOT_A_FILE = "nothing: it is not a regular file"

OLD = time.time() - 3600
REPO = Path(__file__).resolve().parents[2]


def theoryx_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``theoryx --home HOME ARGS`` in a child, killed after 60 s (before the fix: hung forever)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "theoryx", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def within(seconds: float, fn: Callable[[], Any], fifo: Path) -> Any:
    """``fn()``'s result; a failure if it has not returned after ``seconds`` (the FIFO is then
    opened for writing, so that the blocked reader returns and the thread ends)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_outcome(fn)), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
        pytest.fail(f"blocked for more than {seconds} s on the FIFO {fifo}")
    [(value, error)] = out
    if error is not None:
        raise error
    return value


def _outcome(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except BaseException as exc:   # handed to the test's thread
        return None, exc


def response_blob(home: Path, result: theoryx.RunResult) -> tuple[str, Path]:
    [out] = [o for o in result.outputs if o.path.endswith("response.txt")]
    return out.cid, stores(home).cas.path(out.cid)


@pytest.mark.parametrize("kind", ["fifo", "link", "directory"])
def test_verify_reports_an_odd_file_in_a_blobs_place_and_repair_removes_it(
        home: Path, tmp_path: Path, kind: str) -> None:
    result = run(home)
    cid, path = response_blob(home, result)
    outside = tmp_path / "outside.txt"
    outside.write_text("a file outside the home")
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link":
        path.symlink_to(outside)
    else:
        path.mkdir()
    res = theoryx_cli(home, "verify", "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 1, res.stderr
    assert [p["cid"] for p in report["corrupt"]] == [cid], report
    res = theoryx_cli(home, "verify", "--repair", "--json")
    repaired = json.loads(res.stdout)
    assert repaired["repaired"]["blobs_removed"] == 1, repaired
    assert not os.path.lexists(path)
    assert outside.read_text() == "a file outside the home"
    again = run(home)
    assert again.cache == "miss"
    res = theoryx_cli(home, "verify", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["clean"], res.stdout


@pytest.mark.parametrize("kind", ["fifo", "directory", "link"])
def test_gc_removes_a_stray_in_a_leases_place_and_never_blocks(home: Path, tmp_path: Path, kind: str) -> None:
    run(home)
    stray = home / "leases" / "x-stray.lease"
    if kind == "fifo":
        os.mkfifo(stray)
    elif kind == "directory":
        stray.mkdir()
        (stray / "inside").write_text("debris")
    else:
        target = tmp_path / "target.lease"
        target.write_text("b3:" + "0" * 64 + "\n")
        stray.symlink_to(target)
    os.utime(stray, (OLD, OLD), follow_symlinks=False)
    for args in (["verify", "--json"], ["gc", "--grace", "0", "--json"]):
        res = theoryx_cli(home, *args)
        body = json.loads(res.stdout)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
    assert body["stale_leases_removed"] == 1, body
    assert not os.path.lexists(stray)
    if kind == "link":
        assert target.exists()


def test_the_cas_never_blocks_on_a_fifo_nor_follows_a_link_in_a_blobs_place(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas", fsync=False)
    cid = store.put_bytes(b"a blob").cid
    path = store.path(cid)
    path.unlink()
    os.mkfifo(path)
    assert store.stat(cid) is None
    assert within(10, lambda: store.verify(cid), path) is False
    with pytest.raises(CorruptBlob) as raised:
        within(10, lambda: store.check(cid), path)
    assert raised.value.actual == NOT_A_FILE
    assert not os.path.lexists(path) and [c for c, _ in store.quarantined()] == [cid]
    assert store.put_bytes(b"a blob").cid == cid and store.read(cid) == b"a blob"

    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    path.unlink()
    path.symlink_to(secret)
    assert store.stat(cid) is None
    assert store.verify(cid) is False
    with pytest.raises(CorruptBlob):
        store.read(cid)
    assert secret.read_bytes() == b"not yours" and not os.path.lexists(path)


def test_an_empty_blob_replaced_by_a_fifo_is_stored_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas", fsync=False)
    cid = store.put_bytes(b"").cid
    path = store.path(cid)
    path.unlink()
    os.mkfifo(path)            # the size matches (0): the write checks the bytes, which must not block
    assert within(10, lambda: store.put_bytes(b"").cid, path) == cid
    assert within(10, lambda: store.check(cid).size, path) == 0


@pytest.mark.parametrize("command", [("gc", "--dry-run"), ("verify",), ("gc", "--grace", "0")])
def test_a_fifo_where_a_live_pre_image_belongs_blocks_neither_gc_nor_verify(
        home: Path, command: tuple[str, ...]) -> None:
    """The closure of the live set reads the action pre-images with a blocking open: a FIFO at
    one's path still hung gc and verify (the blob readers had been fixed, not this one)."""
    result = run(home)
    assert result.record.action_cid is not None
    path = stores(home).cas.path(result.record.action_cid)
    path.unlink()
    os.mkfifo(path)
    res = theoryx_cli(home, *command)             # killed after 60 s: before the fix it never returned
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr


def test_a_lease_gc_cannot_read_is_never_taken_for_a_stray(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group-shared home where another member's lease is 0600: open_lease said "no lease" on
    EACCES, so gc removed the live lease and reclaimed the blobs it protected."""
    from theoryx.store import leases

    real = os.open

    def refused(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if str(path).endswith(".lease"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *args, **kw)

    lease_file = home / "leases" / "01m8zzzzzzzzzzzzzzzzzzzzzz.lease"
    lease_file.parent.mkdir(parents=True, exist_ok=True)
    lease_file.write_text("b3:" + "0" * 64 + "\n")
    monkeypatch.setattr(leases.os, "open", refused)
    with pytest.raises(PermissionError):
        leases.is_held(lease_file)
    with pytest.raises(PermissionError):
        list(leases.leased_cids(lease_file.parent))
