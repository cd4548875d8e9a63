"""The CAS's two-phase removal and scans that gc and verify build on."""

from __future__ import annotations

import os
from pathlib import Path

from cas import Store


def test_a_withdrawn_blob_is_absent_until_reinstated(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas-v1", fsync=False)
    blob = store.put_bytes(b"withdraw me")
    assert store.withdraw(blob.cid)
    assert not store.exists(blob.cid) and list(store.withdrawn()) == [blob.cid]
    assert store.withdrawn_stat(blob.cid) is not None
    assert store.reinstate(blob.cid)
    assert store.read(blob.cid) == b"withdraw me" and list(store.withdrawn()) == []
    assert not store.reinstate(blob.cid) and not store.purge(blob.cid)


def test_a_blob_stored_again_while_withdrawn_wins_over_the_withdrawn_copy(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas-v1", fsync=False)
    blob = store.put_bytes(b"again")
    store.withdraw(blob.cid)
    assert store.put_bytes(b"again") == blob  # the writer saw it absent and stored it anew
    assert store.reinstate(blob.cid)
    assert store.read(blob.cid) == b"again" and list(store.withdrawn()) == []


def test_purge_removes_only_the_withdrawn_copy(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas-v1", fsync=False)
    blob = store.put_bytes(b"purged")
    store.withdraw(blob.cid)
    store.put_bytes(b"purged")
    assert store.purge(blob.cid)
    assert store.read(blob.cid) == b"purged"


def test_withdrawing_an_absent_blob_is_false(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas-v1", fsync=False)
    assert not store.withdraw("b3:" + "0" * 64)


def test_scans_name_every_blob_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas-v1", fsync=False)
    cids = {store.put_bytes(f"blob {i}".encode()).cid for i in range(50)}
    (store.root / "blobs" / "zz").mkdir()  # stray names are not blobs
    (store.root / "blobs" / "00" / "stray").parent.mkdir(exist_ok=True)
    (store.root / "blobs" / "00" / "stray").write_text("x")
    with_stats = list(store.iter_blob_stats())
    assert [c for c, _ in with_stats] == sorted(cids)
    assert all(st.st_size == len(store.read(c)) for c, st in with_stats)
    by_shard = {cid for shard in store.shards() for cid, _ in store.iter_shard(shard)}
    assert by_shard == cids
    assert all(os.path.basename(p) == c[5:] for s in store.shards() for c, p in store.iter_shard(s))
