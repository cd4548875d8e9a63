"""Cids: their syntax, how they are computed, and that they match what the store names blobs."""

from __future__ import annotations

from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas import InvalidCid, Store, cid_of_bytes, is_cid
from cas.cid import check_cid, cid_from_hex, hex_of

GOOD = "b3:" + "0123456789abcdef" * 4

BAD = [
    "",
    "b3:",
    "b3:" + "a" * 63,
    "b3:" + "a" * 65,
    "b3:" + "A" * 64,
    "B3:" + "a" * 64,
    "sha256:" + "a" * 64,
    "a" * 64,
    "b3:" + "g" * 64,
    " b3:" + "a" * 64,
    "b3:" + "a" * 64 + "\n",
    "b3:" + "a" * 64 + " ",
    "b3:../../../../etc/passwd",
    "b3:" + "a" * 62 + "/.",
    "b3:" + "../" * 21 + "a",
    "b3:" + "a" * 2 + "/" + "a" * 61,
    "/etc/passwd",
    "b3:" + "\u0660" * 64,  # Arabic-Indic digits match \d but are not hex
]


def test_known_answers_match_the_blake3_reference() -> None:
    assert cid_of_bytes(b"") == "b3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert cid_of_bytes(b"abc") == "b3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"


def test_well_formed_cid_is_accepted() -> None:
    assert is_cid(GOOD)
    assert check_cid(GOOD) == GOOD
    assert hex_of(GOOD) == GOOD[3:]
    assert cid_from_hex(GOOD[3:]) == GOOD


@pytest.mark.parametrize("value", BAD)
def test_malformed_cid_is_rejected(value: str) -> None:
    assert not is_cid(value)
    with pytest.raises(InvalidCid):
        check_cid(value)


@pytest.mark.parametrize("value", [None, 0, b"b3:" + b"a" * 64, ["b3:" + "a" * 64]])
def test_non_string_is_not_a_cid(value: object) -> None:
    assert not is_cid(value)
    with pytest.raises(InvalidCid):
        check_cid(value)


@pytest.mark.parametrize("digest", ["A" * 64, "a" * 63, "b3:" + "a" * 64])
def test_cid_from_hex_rejects_anything_but_64_lowercase_hex(digest: str) -> None:
    with pytest.raises(InvalidCid):
        cid_from_hex(digest)


@settings(max_examples=60, deadline=None, database=None)
@given(data=st.binary(max_size=300_000))
def test_cid_of_bytes_is_blake3_and_names_the_stored_blob(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = Store(tmp_path_factory.getbasetemp() / "property-store", fsync=False)
    cid = cid_of_bytes(data)
    assert is_cid(cid)
    assert cid == "b3:" + blake3.blake3(data).hexdigest()
    blob = store.put_bytes(data)
    assert (blob.cid, blob.size) == (cid, len(data))
    assert store.read(cid) == data


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.binary(max_size=70_000))
def test_put_stream_and_put_file_agree_with_cid_of_bytes(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    store = Store(base / "property-store-2", fsync=False)
    source = base / "property-source"
    source.write_bytes(data)
    expected = cid_of_bytes(data)
    assert store.put_file(Path(source)).cid == expected
    with source.open("rb") as stream:
        assert store.put_stream(stream).cid == expected
