"""Blob: the cid + size identity value."""

from __future__ import annotations

import dataclasses

import pytest

from cas import Blob, InvalidCid

CID = "b3:" + "ab" * 32


def test_blob_round_trips_through_a_dict() -> None:
    blob = Blob(CID, 42)
    assert blob.to_dict() == {"cid": CID, "size": 42}
    assert Blob.from_dict(blob.to_dict()) == blob


def test_from_dict_ignores_extra_keys() -> None:
    assert Blob.from_dict({"cid": CID, "size": 1, "mime": "text/plain"}) == Blob(CID, 1)


def test_blob_is_frozen_and_hashable() -> None:
    blob = Blob(CID, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        blob.size = 2  # type: ignore[misc]
    assert {blob, Blob(CID, 1)} == {blob}


@pytest.mark.parametrize("cid", ["", "b3:xyz", CID.upper(), "b3:../../x"])
def test_blob_with_malformed_cid_is_refused(cid: str) -> None:
    with pytest.raises(InvalidCid):
        Blob(cid, 1)
    with pytest.raises(InvalidCid):
        Blob.from_dict({"cid": cid, "size": 1})


def test_blob_with_negative_or_non_int_size_is_refused() -> None:
    with pytest.raises(ValueError):
        Blob(CID, -1)
    with pytest.raises(TypeError):
        Blob(CID, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Blob(CID, True)


@pytest.mark.parametrize("d", [{"cid": CID}, {"cid": CID, "size": "3"}, {"cid": CID, "size": True}, {"size": 1}])
def test_from_dict_refuses_missing_or_malformed_fields(d: dict[str, object]) -> None:
    with pytest.raises((ValueError, InvalidCid)):
        Blob.from_dict(d)
