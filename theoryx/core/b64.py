"""Canonical base64, as DSSE envelopes carry it: standard or URL-safe alphabet, padded or not.

Shared by the receipts' DSSE code (:mod:`theoryx.provenance.dsse`) and the team cache's cheap
signature check (:mod:`theoryx.remote.trust`), which word the failure in their own errors.
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


def canonical_b64decode(text: object) -> bytes:
    """The bytes of ``text``, standard or URL-safe base64, padded or not, in canonical form only
    (re-encoding gives the same text: no stray bits in the last character, no mixed padding);
    else :class:`Base64Error`."""
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
