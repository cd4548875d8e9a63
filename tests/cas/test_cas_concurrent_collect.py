"""Writes racing a collector (issue 10, defect 3): a temp file in use is never taken for an
abandoned one, and publishing converges however often the blob vanishes and comes back."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cas import Store, cid_of_bytes
from cas.staging import TempFile

FAR_FUTURE = time.time() + 10 * 3600


def test_a_temp_file_being_written_is_never_removed_whatever_its_age(store: Store) -> None:
    with TempFile.create(store.root / "tmp") as temp:
        os.write(temp.fd, b"half of a blob")
        kept = store.remove_temp(temp.path, older_than_s=0, now=FAR_FUTURE)
        assert kept is None and temp.path.exists(), "in use: its writer holds the lock"
    abandoned = store.root / "tmp" / "abandoned.tmp"
    abandoned.write_bytes(b"left by a crash")
    assert store.remove_temp(abandoned, older_than_s=0, now=FAR_FUTURE, dry_run=True) == 15
    assert abandoned.exists()
    assert store.remove_temp(abandoned, older_than_s=3600) is None, "young: kept"
    assert store.remove_temp(abandoned, older_than_s=0, now=FAR_FUTURE) == 15
    assert not abandoned.exists()


def test_a_writer_whose_new_temp_name_is_removed_before_it_locks_it_takes_another(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import cas.staging as staging

    real_flock, removed = staging.fcntl.flock, []

    def collector_first(fd: int, op: int) -> None:
        # A collector unlinks the fresh temp between its creation and its writer's lock.
        if not removed:
            victim = next((store.root / "tmp").iterdir())
            removed.append(victim)
            assert store.remove_temp(victim, older_than_s=-1) == 0
        real_flock(fd, op)

    monkeypatch.setattr(staging.fcntl, "flock", collector_first)
    blob = store.put_stream(io.BytesIO(b"written anyway"))  # a named temp file (put_bytes has none)
    assert removed and store.read(blob.cid) == b"written anyway"
    assert list(store.tmp_files()) == []


def test_publishing_converges_when_the_blob_vanishes_at_every_look(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The adversary: each time the writer refreshes the existing blob, a collector has just
    withdrawn it, and puts it back right after, so the next link finds it again. Before the fix
    publishing gave up with ``could not publish ...: it kept appearing and disappearing``."""
    data = b"a blob a collector keeps withdrawing"
    cid = cid_of_bytes(data)
    store.put_bytes(data)
    dest = store.path(cid)
    real_utime, flips = os.utime, []

    def withdrawn_at_every_look(path: Any, *args: Any, **kw: Any) -> None:
        if Path(path) != dest:
            return real_utime(path, *args, **kw)
        assert store.withdraw(cid)
        flips.append(1)
        try:
            return real_utime(path, *args, **kw)
        finally:
            store.reinstate(cid)

    monkeypatch.setattr(os, "utime", withdrawn_at_every_look)
    for _ in range(3):
        assert store.put_bytes(data).cid == cid      # the fast path's look, then publish's
        assert store.put_stream(io.BytesIO(data)).cid == cid  # publish's look only
    monkeypatch.undo()
    print(f"withdrawals met while publishing: {len(flips)}")
    assert flips and store.read(cid) == data
    assert list(store.withdrawn()) == [] and list(store.tmp_files()) == []


def test_a_stored_copy_of_the_wrong_size_is_replaced_by_the_next_write(store: Store) -> None:
    data = b"the whole blob, not a truncated one"
    blob = store.put_bytes(data)
    path = store.path(blob.cid)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.truncate(7)
    os.chmod(path, 0o444)
    assert store.put_bytes(data) == blob
    assert store.read(blob.cid) == data
    src = store.root.parent / "src.bin"
    src.write_bytes(data)
    os.chmod(path, 0o644)
    path.write_bytes(b"short")
    assert store.put_file(src) == blob and store.read(blob.cid) == data
