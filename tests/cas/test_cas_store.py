"""Store: writing, reading, checking, deleting and listing blobs."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cas import Blob, BlobNotFound, CorruptBlob, InvalidCid, Store, cid_of_bytes

MISSING = "b3:" + "f" * 64
Corrupt = Callable[..., None]


def test_store_creates_nothing_until_the_first_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas-v1")
    assert not store.exists(MISSING)
    assert list(store.iter_blobs()) == []
    assert list(store.tmp_files()) == []
    assert not store.root.exists()
    store.put_bytes(b"x")
    assert (store.root / "blobs").is_dir()
    assert (store.root / "tmp").is_dir()


def test_put_bytes_then_read_exists_stat(store: Store) -> None:
    blob = store.put_bytes(b"hello")
    assert blob == Blob(cid_of_bytes(b"hello"), 5)
    assert store.exists(blob.cid)
    assert store.stat(blob.cid) == blob
    assert store.read(blob.cid) == b"hello"
    with store.open(blob.cid) as reader:
        assert reader.read() == b"hello"


def test_blob_lives_at_sharded_path(store: Store) -> None:
    blob = store.put_bytes(b"layout")
    digest = blob.cid[3:]
    assert store.path(blob.cid) == store.root / "blobs" / digest[:2] / digest[2:]
    assert store.path(blob.cid).is_file()


def test_published_blob_is_read_only(store: Store) -> None:
    blob = store.put_bytes(b"read only")
    assert stat.S_IMODE(store.path(blob.cid).stat().st_mode) == 0o444


def test_empty_blob_is_storable(store: Store) -> None:
    blob = store.put_bytes(b"")
    assert blob.size == 0
    assert store.read(blob.cid) == b""
    assert store.verify(blob.cid)


def test_put_is_idempotent_and_leaves_no_temp_files(store: Store) -> None:
    first = store.put_bytes(b"same")
    second = store.put_bytes(b"same")
    assert first == second
    assert list(store.iter_blobs()) == [first]
    assert list(store.tmp_files()) == []


def test_putting_an_existing_blob_refreshes_its_mtime(store: Store, tmp_path: Path) -> None:
    blob = store.put_bytes(b"old news")
    os.utime(store.path(blob.cid), (1_000_000, 1_000_000))
    store.put_bytes(b"old news")
    assert store.path(blob.cid).stat().st_mtime > 1_000_000
    os.utime(store.path(blob.cid), (1_000_000, 1_000_000))
    source = tmp_path / "source"
    source.write_bytes(b"old news")
    assert store.put_file(source) == blob  # through the link-onto-existing path
    assert store.path(blob.cid).stat().st_mtime > 1_000_000
    assert list(store.tmp_files()) == []


def test_existing_blob_is_success_even_if_written_by_another_store_object(tmp_path: Path) -> None:
    a, b = Store(tmp_path / "cas-v1"), Store(tmp_path / "cas-v1")
    assert a.put_bytes(b"shared") == b.put_bytes(b"shared")


def test_touch_refreshes_mtime_and_reports_missing_blob(store: Store) -> None:
    blob = store.put_bytes(b"touch me")
    os.utime(store.path(blob.cid), (1_000_000, 1_000_000))
    store.touch(blob.cid)
    assert store.path(blob.cid).stat().st_mtime > 1_000_000
    with pytest.raises(BlobNotFound):
        store.touch(MISSING)


def test_delete_removes_once(store: Store) -> None:
    blob = store.put_bytes(b"bye")
    assert store.delete(blob.cid) is True
    assert not store.exists(blob.cid)
    assert store.stat(blob.cid) is None
    assert store.delete(blob.cid) is False
    assert store.put_bytes(b"bye") == blob  # can be stored again
    assert store.read(blob.cid) == b"bye"


def test_missing_blob_raises_blob_not_found(store: Store) -> None:
    assert not store.exists(MISSING)
    assert store.stat(MISSING) is None
    for call in (store.open, store.read, store.verify):
        with pytest.raises(BlobNotFound) as info:
            call(MISSING)
        assert info.value.cid == MISSING


def test_iter_blobs_yields_every_blob_in_cid_order(store: Store) -> None:
    blobs = [store.put_bytes(bytes([i]) * i) for i in range(20)]
    assert list(store.iter_blobs()) == sorted(blobs, key=lambda b: b.cid)


def test_iter_blobs_skips_temp_files_and_stray_names(store: Store) -> None:
    blob = store.put_bytes(b"real")
    blobs_dir = store.root / "blobs"
    (blobs_dir / "zz").mkdir()
    (blobs_dir / "zz" / ("a" * 62)).write_bytes(b"bad shard")
    (blobs_dir / blob.cid[3:5] / "short").write_bytes(b"bad name")
    (blobs_dir / blob.cid[3:5] / ("A" * 62)).write_bytes(b"upper case")
    (blobs_dir / blob.cid[3:5] / ("b" * 61 + ".tmp")).write_bytes(b"temp-like")
    (blobs_dir / "ab").mkdir(exist_ok=True)
    (blobs_dir / "ab" / ("c" * 62)).mkdir()  # a directory where a blob would be
    (blobs_dir / "cd").write_bytes(b"a file where a shard would be")
    (store.root / "tmp" / "leftover.tmp").write_bytes(b"partial")
    assert list(store.iter_blobs()) == [blob]


def test_tmp_files_lists_abandoned_temp_files(store: Store) -> None:
    store.put_bytes(b"make dirs")
    abandoned = store.root / "tmp" / "dead.tmp"
    abandoned.write_bytes(b"half a blob")
    assert list(store.tmp_files()) == [abandoned]


def test_verify_detects_a_flipped_byte_without_deleting(store: Store, corrupt: Corrupt) -> None:
    blob = store.put_bytes(b"precious data")
    assert store.verify(blob.cid)
    corrupt(store.path(blob.cid))
    assert store.verify(blob.cid) is False
    assert store.exists(blob.cid)


def test_verify_detects_corruption_in_a_large_blob(store: Store, corrupt: Corrupt) -> None:
    blob = store.put_bytes(os.urandom(3 << 20))  # large enough to be hashed through mmap
    assert store.verify(blob.cid)
    corrupt(store.path(blob.cid), offset=2 << 20)
    assert store.verify(blob.cid) is False


def test_read_refuses_corrupt_blob(store: Store, corrupt: Corrupt) -> None:
    blob = store.put_bytes(b"manifest")
    corrupt(store.path(blob.cid))
    with pytest.raises(CorruptBlob) as info:
        store.read(blob.cid)
    assert info.value.cid == blob.cid
    assert info.value.actual != blob.cid


CID_METHODS = ["exists", "stat", "path", "open", "read", "verify", "delete", "touch"]


@pytest.mark.parametrize("method", CID_METHODS)
@pytest.mark.parametrize(
    "bad",
    ["", "b3:../../../etc/passwd", "../" * 8 + "etc/passwd", "/etc/passwd", "b3:" + "A" * 64, "b3:" + "a" * 64 + "\n"],
)
def test_every_cid_argument_is_validated_before_touching_disk(store: Store, method: str, bad: str) -> None:
    with pytest.raises(InvalidCid):
        getattr(store, method)(bad)
    assert not store.root.exists()


@pytest.mark.parametrize("bad", ["b3:../../x", "b3:" + "a" * 63, None])
def test_link_to_validates_cid(store: Store, tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidCid):
        store.link_to(bad, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_link_to_hard_links_a_read_only_file(store: Store, tmp_path: Path) -> None:
    blob = store.put_bytes(b"input file")
    dest = tmp_path / "work" / "input.txt"
    dest.parent.mkdir()
    store.link_to(blob.cid, dest)
    assert dest.read_bytes() == b"input file"
    assert dest.stat().st_ino == store.path(blob.cid).stat().st_ino
    assert stat.S_IMODE(dest.stat().st_mode) == 0o444


def test_link_to_copies_when_hard_links_are_impossible(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = store.put_bytes(b"across devices")

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    dest = tmp_path / "copy.txt"
    store.link_to(blob.cid, dest)
    assert dest.read_bytes() == b"across devices"
    assert dest.stat().st_ino != store.path(blob.cid).stat().st_ino
    assert stat.S_IMODE(dest.stat().st_mode) == 0o444


def test_link_to_refuses_existing_destination(store: Store, tmp_path: Path) -> None:
    blob = store.put_bytes(b"x")
    dest = tmp_path / "taken"
    dest.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        store.link_to(blob.cid, dest)
    assert dest.read_bytes() == b"mine"


def test_link_to_missing_blob_raises_blob_not_found(store: Store, tmp_path: Path) -> None:
    with pytest.raises(BlobNotFound):
        store.link_to(MISSING, tmp_path / "dest")


def test_concurrent_writers_of_the_same_content_all_succeed(store: Store) -> None:
    data = os.urandom(2 << 20)
    results: list[Blob] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            results.append(store.put_bytes(data))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert list(store.iter_blobs()) == results[:1]
    assert list(store.tmp_files()) == []


def test_store_without_fsync_stores_the_same_blobs(tmp_path: Path) -> None:
    fast = Store(tmp_path / "fast", fsync=False)
    blob = fast.put_bytes(b"scratch")
    assert fast.read(blob.cid) == b"scratch"
    assert stat.S_IMODE(fast.path(blob.cid).stat().st_mode) == 0o444


def test_link_to_copies_by_read_write_when_the_kernel_cannot_copy(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = store.put_bytes(os.urandom(3 << 20))

    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    monkeypatch.setattr(os, "copy_file_range", refuse)
    dest = tmp_path / "copy.bin"
    store.link_to(blob.cid, dest)
    assert dest.read_bytes() == store.read(blob.cid)


def test_blobs_are_published_by_rename_where_hard_links_are_unsupported(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_hard_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    blob = store.put_bytes(b"on a filesystem without hard links")
    assert store.read(blob.cid) == b"on a filesystem without hard links"
    assert stat.S_IMODE(store.path(blob.cid).stat().st_mode) == 0o444
    assert store.put_file(store.path(blob.cid)) == blob  # existing blob: still a success
    assert list(store.tmp_files()) == []


def test_blob_deleted_while_being_rewritten_is_published_again(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent delete between 'the blob exists' and 'refresh its mtime' must not lose it."""
    blob = store.put_bytes(b"contested")
    real_utime = os.utime

    def utime_after_a_concurrent_delete(path: Path, *args: object, **kwargs: object) -> None:
        monkeypatch.setattr(os, "utime", real_utime)
        os.unlink(path)
        real_utime(path, *args, **kwargs)  # type: ignore[arg-type]

    source = tmp_path / "again"
    source.write_bytes(b"contested")
    monkeypatch.setattr(os, "utime", utime_after_a_concurrent_delete)
    assert store.put_file(source) == blob
    assert store.read(blob.cid) == b"contested"


def test_store_recreates_its_directories_if_they_are_removed(store: Store) -> None:
    store.put_bytes(b"first")
    shutil.rmtree(store.root)
    blob = store.put_bytes(b"second")
    assert store.read(blob.cid) == b"second"
