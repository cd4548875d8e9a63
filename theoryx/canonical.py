"""Canonical bytes and digests: RFC 8785 (JSON Canonicalization Scheme) + BLAKE3.

Any auditor can recompute a memo key in any language: ``b3:`` + hex(BLAKE3-256(JCS(action))).
"""

from __future__ import annotations

from typing import Any

import blake3
import rfc8785


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (dict keys must be strings; floats must be finite)."""
    return rfc8785.dumps(value)


def digest(data: bytes) -> str:
    """``b3:`` + 64 lowercase hex of BLAKE3-256 of ``data``."""
    return "b3:" + blake3.blake3(data).hexdigest()


def canonical_digest(value: Any) -> str:
    return digest(canonical_bytes(value))
