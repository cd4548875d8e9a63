"""Content identifiers: ``b3:`` followed by the 64 lowercase hex digits of a BLAKE3-256 digest.

Every path the store builds comes from a cid that passed :func:`check_cid`, so a string such as
``b3:../../etc/passwd`` can never reach the filesystem.
"""

from __future__ import annotations

import re

from cas.errors import InvalidCid

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import TypeGuard

PREFIX = "b3:"
HEX_LENGTH = 64
_CID = re.compile(r"b3:[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{64}")


def is_cid(value: object) -> TypeGuard[str]:
    """Return True if ``value`` is a well-formed cid (a ``str``; no surrounding whitespace)."""
    return isinstance(value, str) and _CID.fullmatch(value) is not None


def check_cid(value: object) -> str:
    """Return ``value`` unchanged if it is a well-formed cid; raise :class:`InvalidCid` otherwise."""
    if not is_cid(value):
        raise InvalidCid(value)
    return value


def cid_from_hex(hexdigest: str) -> str:
    """Return the cid for a 64-digit lowercase hex digest; raise :class:`InvalidCid` otherwise."""
    if _HEX.fullmatch(hexdigest) is None:
        raise InvalidCid(hexdigest)
    return PREFIX + hexdigest


def hex_of(cid: object) -> str:
    """Return the hex digest inside a valid cid; raise :class:`InvalidCid` otherwise."""
    return check_cid(cid)[len(PREFIX) :]
