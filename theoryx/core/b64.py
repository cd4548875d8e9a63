"""Canonical base64, as DSSE envelopes carry it: standard or URL-safe alphabet, padded or not.

Used by the DSSE code (:mod:`theoryx.provenance.dsse`: receipts and the team cache's entries)
and the team cache's layout, which word the failure in their own errors.
"""

from __future__ import annotations

import base64
import binascii


class Base64Error(ValueError):
    """Why a text is not canonical base64: ``reason`` is "must be a base64 string", "is not valid
    base64" or "is not canonical base64"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def standard_b64decode(text: object) -> bytes | None:
    """The bytes of ``text`` if it is exactly their padded standard base64 (the one canonical
    form of the standard alphabet with padding); None for any other text. What this accepts,
    :func:`canonical_b64decode` accepts with the same bytes: it is that check without the regular
    expression that ``validate=True`` runs over the text (a character outside the alphabet, which
    the lenient decoder skips, makes the text differ from the re-encoding)."""
    if not isinstance(text, str):
        return None
    try:
        data = binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None
    return data if binascii.b2a_base64(data, newline=False) == text.encode() else None


def canonical_b64decode(text: object) -> bytes:
    """The bytes of ``text``, standard or URL-safe base64, padded or not, in canonical form only
    (re-encoding gives the same text: no stray bits in the last character, no mixed padding);
    else :class:`Base64Error`. The form theoryx writes (standard, padded) is recognised first,
    by :func:`standard_b64decode`."""
    data = standard_b64decode(text)
    if data is not None:
        return data
    if not isinstance(text, str):
        raise Base64Error("must be a base64 string")
    core = text.rstrip("=")
    padded = core + "=" * (-len(core) % 4)
    urlsafe = "-" in core or "_" in core
    try:
        data = base64.b64decode(padded, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        raise Base64Error("is not valid base64") from None
    again = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode().rstrip("=")
    if again != core or text not in (core, padded):
        raise Base64Error("is not canonical base64")
    return data
