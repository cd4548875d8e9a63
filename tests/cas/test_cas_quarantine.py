"""Reads that hand bytes out check them, and a corrupt blob is quarantined: moved out of
``blobs/`` (the store then answers "absent"), kept for inspection until dropped (issue 10,
defect 7)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Corrupt

from cas import BlobNotFound, CorruptBlob, Store

DATA = b"bytes that will rot on disk " * 100


def _read(store: Store, cid: str) -> object:
    return store.read(cid)


def _stream(store: Store, cid: str) -> object:
    with store.open_verified(cid) as f:
        return f.read()


def _check(store: Store, cid: str) -> object:
    return store.check(cid)


def _link(store: Store, cid: str) -> object:
    dest = store.root.parent / "workspace" / "input.bin"
    dest.parent.mkdir(exist_ok=True)
    try:
        return store.link_to(cid, dest, verify=True)
    finally:
        assert not dest.exists(), "a corrupt input is never left in the workspace"


@pytest.mark.parametrize("read", [_read, _stream, _check, _link], ids=["read", "open_verified", "check", "link_to"])
def test_a_corrupt_blob_is_quarantined_by_the_read_that_finds_it(
        store: Store, corrupt: Corrupt, read: Callable[[Store, str], object]) -> None:
    blob = store.put_bytes(DATA)
    corrupt(store.path(blob.cid), 10)
    with pytest.raises(CorruptBlob) as caught:
        read(store, blob.cid)
    assert caught.value.cid == blob.cid
    assert not store.exists(blob.cid), "out of sight: the next lookup misses"
    [(cid, path)] = list(store.quarantined())
    assert cid == blob.cid and path.read_bytes() != DATA and len(path.read_bytes()) == len(DATA)
    assert store.put_bytes(DATA) == blob and store.read(blob.cid) == DATA, "stored afresh"
    assert store.drop_quarantined(path) and list(store.quarantined()) == []
    with pytest.raises(BlobNotFound):
        read(store, "b3:" + "0" * 64)


def test_intact_blobs_pass_every_checked_read(store: Store, tmp_path: Path) -> None:
    blob = store.put_bytes(DATA)
    assert store.read(blob.cid) == DATA and store.check(blob.cid) == blob
    with store.open_verified(blob.cid) as f:
        assert f.read() == DATA
    dest = tmp_path / "in.bin"
    store.link_to(blob.cid, dest, verify=True)
    assert dest.read_bytes() == DATA and list(store.quarantined()) == []


def test_quarantine_moves_only_the_file_found_corrupt(store: Store) -> None:
    blob = store.put_bytes(DATA)
    st = os.stat(store.path(blob.cid))
    assert not store.quarantine(blob.cid, inode=(st.st_dev, st.st_ino + 1)), "another file now: stays"
    assert store.exists(blob.cid)
    assert store.quarantine(blob.cid, inode=(st.st_dev, st.st_ino))
    assert not store.quarantine(blob.cid), "nothing left to move"
    with pytest.raises(ValueError):
        store.drop_quarantined(store.root / "blobs" / "x")
