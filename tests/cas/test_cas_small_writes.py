"""``put_bytes`` writes through an unnamed temp file (``O_TMPFILE``) where Linux offers one: no
name in ``tmp/`` to lock, remove or leave behind, published by ``linkat`` of its descriptor, with
the same guarantees as the named path (sealed read-only, fsynced before it is linked when the
store is durable, an existing copy kept or a damaged one replaced), and the named path where it
is not available."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import cas.staging as staging
from cas import Store, cid_of_bytes


def _unnamed_files_here(store: Store) -> bool:
    fd = staging.open_anonymous(store.root / "tmp")
    if fd is None:
        return False
    os.close(fd)
    return True


@pytest.fixture
def unnamed(store: Store) -> Store:
    if not _unnamed_files_here(store):
        pytest.skip("no unnamed temp files (O_TMPFILE) on this platform or filesystem")
    return store


def test_put_bytes_never_names_a_temp_file(unnamed: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_names(tmp_dir: Path) -> Path:
        raise AssertionError("put_bytes took a named temp file")

    monkeypatch.setattr(staging, "temp_name", no_names)
    blob = unnamed.put_bytes(b"small, from memory")
    assert unnamed.read(blob.cid) == b"small, from memory"
    assert stat.S_IMODE(unnamed.path(blob.cid).stat().st_mode) == 0o444
    assert unnamed.put_bytes(b"small, from memory") == blob  # present: kept
    assert list(unnamed.tmp_files()) == []


def test_a_durable_put_bytes_fsyncs_the_file_before_linking_it_and_then_its_directory(
        unnamed: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def link(*args: object, **kw: object) -> None:
        events.append("link")
        real_link(*args, **kw)  # type: ignore[arg-type]

    unnamed.put_bytes(b"first, creating the directories")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    unnamed.put_bytes(b"x" * 100)
    # (a new shard directory adds a failed link, its mkdir and its parent's fsync in between)
    assert events[0] == "file" and events[-2:] == ["link", "dir"], events


def test_a_copy_of_the_wrong_size_is_replaced_through_a_second_name(unnamed: Store) -> None:
    data = b"the whole blob" * 10
    blob = unnamed.put_bytes(data)
    path = unnamed.path(blob.cid)
    os.chmod(path, 0o644)
    path.write_bytes(b"short")
    os.chmod(path, 0o444)
    # The look before writing sees the damage; the link then finds the damaged copy in place.
    assert unnamed.put_bytes(data) == blob
    assert unnamed.read(blob.cid) == data
    assert list(unnamed.tmp_files()) == []


def test_a_blob_published_by_someone_else_meanwhile_is_kept(unnamed: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"written twice at once"
    other = Store(unnamed.root)
    other._anonymous = False
    theirs: list[int] = []

    def racing(fd: int, size: int, dest: str, **kw: bool | Path) -> bool | None:
        blob = other.put_bytes(data)   # the other writer wins the race to the name
        theirs.append(other.path(blob.cid).stat().st_ino)
        return staging.publish_anonymous(fd, size, dest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("cas.store.publish_anonymous", racing)
    blob = unnamed.put_bytes(data)
    assert unnamed.read(blob.cid) == data
    assert [unnamed.path(blob.cid).stat().st_ino] == theirs, "the copy found was kept, not replaced"
    assert list(unnamed.tmp_files()) == []


def test_where_there_are_no_unnamed_files_put_bytes_takes_the_named_path(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "_O_TMPFILE", 0)
    blob = store.put_bytes(b"named then")
    assert store.read(blob.cid) == b"named then" and not store._anonymous
    assert list(store.tmp_files()) == []


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EISDIR])
def test_a_filesystem_refusing_unnamed_files_is_not_asked_again(
        store: Store, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    real_open, asked = os.open, []

    def refusing(path: object, flags: int, *args: object, **kw: object) -> int:
        if staging._O_TMPFILE and flags & staging._O_TMPFILE == staging._O_TMPFILE:
            asked.append(path)
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing)
    for n in range(3):
        blob = store.put_bytes(b"blob %d" % n)
        assert store.read(blob.cid) == b"blob %d" % n
    assert len(asked) <= 1
    assert list(store.tmp_files()) == []


def test_a_filesystem_that_cannot_link_the_unnamed_file_gets_the_named_path(
        unnamed: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real_link = os.link

    def no_linkat(src: object, dst: object, **kw: object) -> None:
        if str(src).startswith("/proc/self/fd/"):
            raise OSError(errno.EPERM, "no hard links here")
        real_link(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", no_linkat)
    data = b"published by the named path"
    blob = unnamed.put_bytes(data)
    assert unnamed.read(blob.cid) == data and not unnamed._anonymous
    assert cid_of_bytes(data) == blob.cid
    assert list(unnamed.tmp_files()) == []


def test_a_new_shard_directory_inherits_its_parents_group_bits_whatever_the_umask(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, 0o2770)
    store = Store(root / "cas-v1")
    old = os.umask(0o077)
    try:
        blob = store.put_bytes(b"group-shared")
    finally:
        os.umask(old)
    for d in (store.root, store.root / "blobs", store.path(blob.cid).parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o2770, d
    old = os.umask(0o022)
    try:
        second = store.put_bytes(b"group-shared too")
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path(second.cid).parent.stat().st_mode) == 0o2770


# -- put_many -------------------------------------------------------------------------------------


class Flushes:
    """What a store asked of the disk, in order: ("file", fd's path-less kind) fsyncs, ("dir",
    path) fsyncs of directories, ("link", name) publications, ("syncfs", "")."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def of(self, kind: str) -> list[str]:
        return [what for k, what in self.events if k == kind]


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> Flushes:
    from cas import syncing

    seen = Flushes()
    real_fsync, real_link, real_sync = os.fsync, os.link, syncing.sync_filesystem

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        seen.events.append(("dir", os.readlink(f"/proc/self/fd/{fd}")) if stat.S_ISDIR(st.st_mode)
                           else ("file", str(st.st_ino)))
        real_fsync(fd)

    def link(src: object, dst: object, **kw: object) -> None:
        real_link(src, dst, **kw)  # type: ignore[arg-type]
        seen.events.append(("link", str(os.stat(dst).st_ino)))  # type: ignore[arg-type]

    def sync(path: Path) -> None:
        seen.events.append(("syncfs", ""))
        real_sync(path)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(syncing, "sync_filesystem", sync)
    monkeypatch.setattr(syncing, "dirty_bytes", lambda: 0)
    return seen


def _batch(n: int) -> list[bytes]:
    return [b"small blob %d " % i * (i + 1) for i in range(n)]


def test_put_many_stores_what_put_bytes_stores(store: Store) -> None:
    items = [*_batch(5), _batch(1)[0]]
    blobs = store.put_many(items)
    assert blobs == [Store(store.root).put_bytes(data) for data in items]
    assert [store.read(b.cid) for b in blobs] == items
    assert store.put_many([]) == []
    assert list(store.tmp_files()) == []


def test_put_many_fsyncs_each_file_before_its_link_and_each_new_directory_entry_once_at_the_end(
        unnamed: Store, flushes: Flushes) -> None:
    unnamed.put_bytes(b"the store and its blobs directory exist")
    flushes.events.clear()
    blobs = unnamed.put_many(_batch(6))
    links = flushes.of("link")
    assert len(links) == 6
    for inode in links:  # each file flushed before it got its name
        assert flushes.events.index(("file", inode)) < flushes.events.index(("link", inode))
    last_link = max(i for i, (kind, _) in enumerate(flushes.events) if kind == "link")
    dirs = flushes.of("dir")
    shards = {str(unnamed.path(b.cid).parent) for b in blobs}
    assert set(dirs) == shards | {str(unnamed.root / "blobs")} and len(dirs) == len(set(dirs))
    assert all(kind != "dir" for kind, _ in flushes.events[:last_link]), "a directory flushed between blobs"
    assert dirs[-1] == str(unnamed.root / "blobs")
    print(f"6 new blobs: {len(flushes.of('file'))} file fsyncs, {len(dirs)} directory fsyncs")


def test_put_many_in_a_deferring_block_flushes_nothing_until_the_sync(unnamed: Store, flushes: Flushes) -> None:
    unnamed.put_bytes(b"first")
    flushes.events.clear()
    with unnamed.deferred():
        unnamed.put_many(_batch(4))
        assert flushes.of("file") == [] and flushes.of("dir") == []
    assert flushes.of("syncfs") == [""]


def test_put_many_into_a_new_store_and_over_present_blobs(
        tmp_path: Path, flushes: Flushes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blobs found present are not written again, and are flushed whoever wrote them (another
    process's deferred write may not be durable yet), as Store.ensure_durable does."""
    store = Store(tmp_path / "new" / "cas-v1")
    items = _batch(3)
    assert [store.read(b.cid) for b in store.put_many(items)] == items
    datasynced: list[str] = []
    real = staging._fdatasync

    def fdatasync(fd: int) -> None:
        datasynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(staging, "_fdatasync", fdatasync)
    flushes.events.clear()
    blobs = store.put_many(items)
    assert [b.cid for b in blobs] == [cid_of_bytes(d) for d in items]
    assert flushes.of("link") == [] and flushes.of("file") == [], "present blobs are not written again"
    assert datasynced == [str(store.path(b.cid)) for b in blobs]
    assert flushes.of("dir")[-1] == str(store.root / "blobs")


@pytest.mark.parametrize("anonymous", [True, False])
def test_a_copy_damaged_in_place_is_replaced_by_writing_it_again(tmp_path: Path, anonymous: bool) -> None:
    """One byte flipped, the size unchanged: writing the same bytes again (a re-run) repairs the
    blob (it used to be kept for its size, and the run reported a blob that stayed corrupt)."""
    store = Store(tmp_path / "store")
    store._anonymous = anonymous and store._anonymous
    data = b"the whole blob" * 10
    blob = store.put_bytes(data)
    path = store.path(blob.cid)
    os.chmod(path, 0o644)
    path.write_bytes(b"X" + data[1:])
    os.chmod(path, 0o444)
    assert not store.verify(blob.cid)
    assert store.put_bytes(data) == blob
    assert store.verify(blob.cid) and store.read(blob.cid) == data
    assert list(store.tmp_files()) == []
    src = tmp_path / "same.txt"                     # the same through put_file, moved or copied
    src.write_bytes(data)
    os.chmod(path, 0o644)
    path.write_bytes(b"Y" + data[1:])
    os.chmod(path, 0o444)
    assert store.put_file(src, move=True) == blob and store.verify(blob.cid)
