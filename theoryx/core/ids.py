"""Execution ids: 26 lowercase Crockford base32 characters that sort by creation time (ULID)."""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID = r"[0-9a-hjkmnp-tv-z]{26}"   # compiled on first use (re caches it)


def new_execution_id(now_ms: int | None = None) -> str:
    """48 bits of milliseconds then 80 random bits; lexical order = time order (to the ms)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    # 26 characters of 5 bits = 130 bits: 13 pairs of characters, 10 bits each (a batch makes
    # thousands of ids per second)
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_SHIFTS = tuple(range(120, -1, -10))


def is_execution_id(text: str) -> bool:
    return re.fullmatch(_ID, text) is not None


def timestamp_ms(execution_id: str) -> int:
    """The creation time encoded in an id."""
    value = 0
    for ch in execution_id[:10]:
        value = value * 32 + _ALPHABET.index(ch)
    return value
