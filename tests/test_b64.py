"""Canonical base64 (theoryx.core.b64), shared by DSSE receipts and the team cache's check."""

from __future__ import annotations

import pytest

from theoryx.core.b64 import Base64Error, canonical_b64decode


@pytest.mark.parametrize("text, data", [("aGVsbG8=", b"hello"), ("aGVsbG8", b"hello"), ("-_8=", b"\xfb\xff"),
                                        ("-_8", b"\xfb\xff"), ("", b"")])
def test_standard_and_url_safe_padded_or_not_decode(text: str, data: bytes) -> None:
    assert canonical_b64decode(text) == data


@pytest.mark.parametrize("text, reason", [
    (None, "must be a base64 string"), (b"aGVsbG8=", "must be a base64 string"),
    ("aGVsbG8*", "is not valid base64"), ("aGVsbG9=", "is not canonical base64"),   # stray bits
    ("aGVsbG8==", "is not canonical base64"), ("+_8=", "is not canonical base64"),   # mixed alphabets
])
def test_anything_else_is_refused_with_its_reason(text: object, reason: str) -> None:
    with pytest.raises(Base64Error) as info:
        canonical_b64decode(text)
    assert info.value.reason == reason
