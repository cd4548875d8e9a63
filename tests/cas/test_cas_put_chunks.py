"""Store.put_chunks: bytes from an untrusted source, hashed once while written, published only
if they are exactly the blob expected (a download of the team cache streams through it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas import Blob, CorruptBlob, Store, cid_of_bytes


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cas-v1")


def test_matching_chunks_are_published_as_the_expected_blob(store: Store) -> None:
    data = os.urandom(3 << 20) + b"tail"
    expect = Blob(cid_of_bytes(data), len(data))
    assert store.put_chunks(chunks_of(data, 1 << 20), expect) == expect
    assert store.read(expect.cid) == data
    assert list(store.tmp_files()) == []


def test_the_empty_blob(store: Store) -> None:
    expect = Blob(cid_of_bytes(b""), 0)
    assert store.put_chunks(iter([]), expect) == expect
    assert store.read(expect.cid) == b""


def test_bytes_that_are_not_the_blob_leave_nothing(store: Store) -> None:
    data = bytearray(os.urandom(2 << 20))
    expect = Blob(cid_of_bytes(bytes(data)), len(data))
    data[12345] ^= 1  # same size, one bit flipped
    with pytest.raises(CorruptBlob) as err:
        store.put_chunks(chunks_of(bytes(data), 1 << 20), expect)
    assert err.value.cid == expect.cid and err.value.actual == cid_of_bytes(bytes(data))
    assert not store.exists(expect.cid) and not store.exists(cid_of_bytes(bytes(data)))
    assert list(store.tmp_files()) == [] and list(store.iter_blobs()) == []


def test_a_short_stream_is_refused(store: Store) -> None:
    data = os.urandom(100_000)
    expect = Blob(cid_of_bytes(data), len(data))
    with pytest.raises(CorruptBlob):
        store.put_chunks(chunks_of(data[:-1], 4096), expect)
    assert list(store.iter_blobs()) == [] and list(store.tmp_files()) == []


def test_more_bytes_than_expected_stop_the_stream_at_once(store: Store) -> None:
    data = os.urandom(10_000)
    expect = Blob(cid_of_bytes(data), len(data))
    pulled: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            pulled.append(1)
            yield data[:4096]

    with pytest.raises(CorruptBlob, match="more than the 10000 bytes"):
        store.put_chunks(endless(), expect)
    assert len(pulled) == 3  # the chunk that went past the size was the last one read
    assert list(store.iter_blobs()) == [] and list(store.tmp_files()) == []


def test_an_error_of_the_source_leaves_nothing(store: Store) -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * 1000
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        store.put_chunks(failing(), Blob(cid_of_bytes(b"x" * 2000), 2000))
    assert list(store.iter_blobs()) == [] and list(store.tmp_files()) == []


def test_a_blob_already_stored_is_a_success(store: Store) -> None:
    data = b"again" * 1000
    first = store.put_bytes(data)
    assert store.put_chunks(chunks_of(data, 1000), first) == first
    assert store.read(first.cid) == data
