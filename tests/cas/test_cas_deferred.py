"""Deferred durability (``Store.deferred`` / ``Store.sync``, :mod:`cas.syncing`): a thread's writes
skip their own fsyncs and are made durable by one ``syncfs``, shared by concurrent callers, before
anything names them. What is counted here: fsync calls and filesystem syncs."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas import Store, cid_of_bytes, syncing
from cas.syncing import SyncGroup

pytestmark = pytest.mark.skipif(syncing.syncfs() is None, reason="no syncfs on this platform")


class Counts:
    def __init__(self) -> None:
        self.fsyncs = 0
        self.syncs = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    """Counts per-file flushes (fsync, fdatasync) and filesystem syncs, which still happen. The
    machine is taken to hold little dirty data (so that the store defers) unless a test says
    otherwise."""
    seen = Counts()
    real_fsync, real_fdatasync, real_sync = os.fsync, os.fdatasync, syncing.sync_filesystem

    def fsync(fd: int) -> None:
        seen.fsyncs += 1
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        seen.fsyncs += 1
        real_fdatasync(fd)

    def sync(path: Path) -> None:
        seen.syncs += 1
        real_sync(path)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr("cas.staging._fdatasync", fdatasync)
    monkeypatch.setattr(syncing, "sync_filesystem", sync)
    monkeypatch.setattr(syncing, "dirty_bytes", lambda: 0)
    yield seen


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_writes_in_a_deferred_block_are_synced_once_instead_of_fsynced_each(
        store: Store, tmp_path: Path, counts: Counts) -> None:
    with store.deferred():
        a = store.put_bytes(b"one")
        b = store.put_file(_file(tmp_path / "two", b"two"))
        c = store.put_file(_file(tmp_path / "three", b"three" * 1000), move=True)
        with open(_file(tmp_path / "four", b"four"), "rb") as f:
            d = store.put_stream(f)
        assert counts.fsyncs == 0 and counts.syncs == 0
        store.sync()
        assert counts.syncs == 1
        store.sync()  # nothing owed any more
        assert counts.syncs == 1
    assert counts.syncs == 1 and counts.fsyncs == 0, "leaving the block: nothing was owed"
    for blob, data in ((a, b"one"), (b, b"two"), (c, b"three" * 1000), (d, b"four")):
        assert store.read(blob.cid) == data
    assert list(store.tmp_files()) == []


def test_the_same_writes_outside_a_block_fsync_each_blob_and_its_directory(
        store: Store, tmp_path: Path, counts: Counts) -> None:
    store.put_bytes(b"one")
    store.put_file(_file(tmp_path / "two", b"two"), move=True)
    assert counts.fsyncs >= 4 and counts.syncs == 0


def test_leaving_the_block_syncs_what_is_owed(store: Store, counts: Counts) -> None:
    with store.deferred():
        store.put_bytes(b"never synced explicitly")
    assert counts.syncs == 1 and counts.fsyncs == 0


def test_leaving_the_block_by_an_exception_still_syncs_and_raises_the_exception(
        store: Store, counts: Counts) -> None:
    with pytest.raises(KeyError), store.deferred():
        store.put_bytes(b"written before the failure")
        raise KeyError("the run failed")
    assert counts.syncs == 1, "a failure record committed next may name the blob"


def test_a_blob_found_present_in_a_block_is_owed_a_sync(store: Store, tmp_path: Path, counts: Counts) -> None:
    """The copy found may be another deferred writer's, not durable yet."""
    existing = store.put_bytes(b"already there")
    store.put_bytes(b"small already there")
    before = counts.fsyncs
    with store.deferred():
        assert store.put_bytes(b"already there") == existing
        store.sync()
        assert counts.syncs == 1
        store.put_file(_file(tmp_path / "dup", b"small already there"), move=True)
        store.put_file(_file(tmp_path / "dup2", b"already there"))
        store.sync()
        assert counts.syncs == 2
    assert counts.fsyncs == before


def test_blocks_nest_and_only_the_outermost_syncs(store: Store, counts: Counts) -> None:
    with store.deferred():
        with store.deferred():
            store.put_bytes(b"inner")
        assert counts.syncs == 0
        store.put_bytes(b"outer")
    assert counts.syncs == 1 and counts.fsyncs == 0


def test_other_threads_are_not_deferred(store: Store, counts: Counts) -> None:
    def other() -> None:
        store.put_bytes(b"written by another thread")

    with store.deferred():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert counts.fsyncs >= 2, "the other thread's write fsynced as it was published"


@contextlib.contextmanager
def unsynced_by_another_thread(store: Store, data: bytes) -> Iterator[None]:
    """Within the block, another thread has published ``data`` in a deferring block of its own
    and not synced it yet."""
    written, release = threading.Event(), threading.Event()

    def deferring() -> None:
        with store.deferred():
            store.put_bytes(data)
            written.set()
            release.wait(10)

    thread = threading.Thread(target=deferring)
    thread.start()
    try:
        assert written.wait(10)
        yield
    finally:
        release.set()
        thread.join()


def test_a_durable_write_that_finds_its_blob_present_flushes_it_whoever_wrote_it(store: Store, counts: Counts) -> None:
    """One rule: the copy found may be any writer's deferred write (this process's threads are
    not the only writers), so it is flushed with its shard's entry and the shard's own."""
    with unsynced_by_another_thread(store, b"shared bytes"):
        before = counts.fsyncs
        store.put_bytes(b"shared bytes")   # present, but not durable yet: flushed with its directories
        assert counts.fsyncs == before + 3
    before = counts.fsyncs
    store.put_bytes(b"shared bytes")       # nobody here owes a sync, but another process might
    assert counts.fsyncs == before + 3
    with store.deferred():
        before = counts.fsyncs
        store.put_bytes(b"shared bytes")   # in a deferring block: owed to the block's sync instead
        assert counts.fsyncs == before


def test_with_much_dirty_data_on_the_machine_a_block_does_not_defer(
        store: Store, counts: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syncing, "dirty_bytes", lambda: syncing.DIRTY_LIMIT + 1)
    with store.deferred():
        store.put_bytes(b"fsynced at once")
        assert counts.fsyncs >= 2
    assert counts.syncs == 0


def test_a_store_without_fsync_never_syncs(tmp_path: Path, counts: Counts) -> None:
    store = Store(tmp_path / "fast", fsync=False)
    with store.deferred():
        store.put_bytes(b"scratch")
    store.sync()
    assert counts.syncs == 0 and counts.fsyncs == 0


def test_dirty_bytes_reads_the_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "meminfo"
    fake.write_bytes(b"MemTotal:  100 kB\nDirty:   12 kB\nWriteback:   3 kB\n")
    monkeypatch.setattr(syncing, "_MEMINFO", str(fake))
    assert syncing.dirty_bytes() == 15 * 1024
    fake.write_bytes(b"MemTotal:  100 kB\n")
    assert syncing.dirty_bytes() is None and not syncing.worth_deferring()


# -- group commit ------------------------------------------------------------------------------


def test_concurrent_callers_share_syncs_and_each_is_covered_by_one_that_started_after_it() -> None:
    spans: list[tuple[float, float]] = []

    def slow_sync(_: Path) -> None:
        start = time.monotonic()
        time.sleep(0.05)
        spans.append((start, time.monotonic()))

    group = SyncGroup(lambda: Path("."), slow_sync)
    calls: list[tuple[float, float]] = []
    lock = threading.Lock()

    def caller() -> None:
        t0 = time.monotonic()
        group.sync()
        with lock:
            calls.append((t0, time.monotonic()))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 8
    assert group.syncs == len(spans) <= 3, "eight callers, at most three syncs"
    for called, returned in calls:
        assert any(start >= called and end <= returned for start, end in spans), (called, spans)


def test_a_failed_sync_raises_in_every_caller_it_covered_and_the_next_one_succeeds() -> None:
    entered, release = threading.Event(), threading.Event()
    outcomes: list[str] = []
    attempts = 0

    def failing_once(_: Path) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            entered.set()
            release.wait(10)
            return
        if attempts == 2:
            raise OSError(5, "Input/output error")

    group = SyncGroup(lambda: Path("."), failing_once)

    def caller() -> None:
        try:
            group.sync()
        except OSError:
            outcomes.append("failed")
        else:
            outcomes.append("ok")

    first = threading.Thread(target=caller)
    first.start()
    assert entered.wait(10)
    waiters = [threading.Thread(target=caller) for _ in range(3)]   # all covered by sync 2
    for t in waiters:
        t.start()
    time.sleep(0.1)
    release.set()
    for t in [first, *waiters]:
        t.join()
    assert sorted(outcomes) == ["failed", "failed", "failed", "ok"]
    group.sync()  # sync 3 succeeds
    assert attempts == 3


def test_the_real_sync_makes_a_new_blob_durable_enough_to_read_back(store: Store) -> None:
    with store.deferred():
        blob = store.put_bytes(b"through syncfs")
    assert blob.cid == cid_of_bytes(b"through syncfs") and store.read(blob.cid) == b"through syncfs"


def test_a_store_on_a_filesystem_whose_syncfs_may_not_flush_never_defers(
        tmp_path: Path, counts: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syncing, "filesystem_type", lambda path: "fuse.sshfs")
    store = Store(tmp_path / "remote-mount")
    with store.deferred():
        store.put_bytes(b"fsynced at once")
        assert counts.fsyncs >= 2
    assert counts.syncs == 0


def test_the_filesystem_type_is_the_innermost_and_last_mount() -> None:
    mountinfo = [
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
        "30 22 0:40 / /mnt/my\\040disk rw shared:2 - xfs /dev/sdb1 rw",
        "31 22 0:41 / /mnt/my\\040disk/net rw - fuse.sshfs host:/ rw",
        "32 22 0:42 / /mnt/my\\040disk/net rw - nfs4 host:/ rw",
        "33 22 0:43 / /mnt/other rw - btrfs /dev/sdc1 rw",
        "garbage",
    ]
    assert syncing.mount_type("/mnt/my disk/store", mountinfo) == "xfs"
    assert syncing.mount_type("/mnt/my disk/net/store", mountinfo) == "nfs4"   # stacked: the last
    assert syncing.mount_type("/mnt/otherwise", mountinfo) == "ext4"           # not under /mnt/other
    assert syncing.mount_type("/mnt/other", mountinfo) == "btrfs"
    assert syncing.mount_type("/x", ["garbage"]) is None


def test_the_filesystem_of_a_store_not_created_yet_is_its_nearest_existing_parents(tmp_path: Path) -> None:
    assert syncing.filesystem_type(tmp_path / "not" / "yet") == syncing.filesystem_type(tmp_path) is not None


# -- blobs found present (ensure_durable) ---------------------------------------------------------


def test_ensure_durable_answers_the_absent_cids_in_order_without_repeats(store: Store) -> None:
    here = store.put_bytes(b"here").cid
    gone, lost = cid_of_bytes(b"gone"), cid_of_bytes(b"lost")
    assert store.ensure_durable([gone, here, lost, gone, here]) == [gone, lost]
    assert store.ensure_durable([]) == []


def test_ensure_durable_answers_a_cid_whose_path_is_not_a_file_as_absent(store: Store) -> None:
    """A damaged store (a directory where a blob should be): the cid is to be fetched again,
    and the answer holds cids only, never paths."""
    odd = cid_of_bytes(b"odd")
    os.makedirs(store.fspath(odd))
    assert store.ensure_durable([odd]) == [odd]


def test_outside_a_block_blobs_found_present_are_flushed_whoever_wrote_them(store: Store, counts: Counts) -> None:
    """This process owes no sync: the copies may still be another process's unsynced deferred
    writes, which nothing here can tell. Each is flushed with its directory, then the shards'
    parent once."""
    cids = [store.put_bytes(b"one").cid, store.put_bytes(b"two").cid]
    before = counts.fsyncs
    assert store.ensure_durable([*cids, cid_of_bytes(b"absent")]) == [cid_of_bytes(b"absent")]
    assert counts.fsyncs - before == 2 * 2 + 1 and counts.syncs == 0
    before = counts.fsyncs
    assert store.ensure_durable([cid_of_bytes(b"absent")]) == [cid_of_bytes(b"absent")]
    assert counts.fsyncs == before, "nothing present: nothing to flush"


def test_in_a_block_blobs_found_present_are_owed_the_blocks_sync(store: Store, counts: Counts) -> None:
    cids = [store.put_bytes(b"one").cid, store.put_bytes(b"two").cid]
    before = counts.fsyncs
    with store.deferred():
        assert store.ensure_durable(cids) == []
        assert counts.syncs == 0
    assert counts.syncs == 1 and counts.fsyncs == before


def test_in_a_block_that_does_not_defer_blobs_found_present_are_flushed(
        store: Store, counts: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = store.put_bytes(b"one").cid
    monkeypatch.setattr(syncing, "dirty_bytes", lambda: syncing.DIRTY_LIMIT + 1)
    before = counts.fsyncs
    with store.deferred():
        assert store.ensure_durable([cid]) == []
        assert counts.fsyncs - before == 3
    assert counts.syncs == 0


def test_ensure_durable_in_a_store_without_fsync_flushes_nothing(tmp_path: Path, counts: Counts) -> None:
    store = Store(tmp_path / "fast", fsync=False)
    cid = store.put_bytes(b"scratch").cid
    assert store.ensure_durable([cid]) == []
    assert counts.syncs == 0 and counts.fsyncs == 0


def test_ensure_durable_flushes_another_threads_unsynced_blob_in_its_own_block(store: Store, counts: Counts) -> None:
    """A deferring writer has published the blob and not synced yet; a reader in its own block
    that finds it owes a sync, which covers the other writer's data (syncfs)."""
    with unsynced_by_another_thread(store, b"shared bytes"), store.deferred():
        assert store.ensure_durable([cid_of_bytes(b"shared bytes")]) == []
        store.sync()
        assert counts.syncs == 1, "the reader's own sync, before it commits anything"


def test_the_filesystem_type_is_looked_up_once_per_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = syncing.filesystem_type(tmp_path)
    reads: list[str] = []
    real_open = open

    def counting_open(path: object, *args: object, **kw: object) -> object:
        reads.append(str(path))
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", counting_open)
    (tmp_path / "a").mkdir()
    assert syncing.filesystem_type(tmp_path / "a" / "store") == first
    assert syncing._MOUNTINFO not in reads, "the mount table was read again for the same filesystem"
