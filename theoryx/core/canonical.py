"""Canonical bytes and digests: RFC 8785 (JSON Canonicalization Scheme) + BLAKE3.

Any auditor can recompute a memo key in any language: ``b3:`` + hex(BLAKE3-256(JCS(action))).

The encoder is written here (stdlib only) because it runs on every cache hit and the
``rfc8785`` package costs more to import than the whole rest of a hit; tests check it
byte-for-byte against ``rfc8785.dumps`` on generated values. Rules (RFC 8785 §3.2): object keys
sorted by UTF-16 code units, strings escaped as ECMAScript ``JSON.stringify`` does, numbers
formatted as ECMAScript ``Number.prototype.toString``, integers limited to ±(2**53 - 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import blake3

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

MAX_SAFE_INT = 2**53 - 1
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t"})


class CanonicalizationError(ValueError):
    """A value has no RFC 8785 form (NaN, infinity, huge integer, non-string key, lone surrogate)."""


def _string(s: str) -> str:
    return '"' + s.translate(_ESCAPES) + '"'


def _number(x: float) -> str:
    """ECMAScript Number::toString for a finite double."""
    if math.isnan(x) or math.isinf(x):
        raise CanonicalizationError(f"{x} has no JSON form")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    frac = "" if frac == "0" else frac
    digits = (whole + frac).lstrip("0")
    n = len(whole.lstrip("0")) + (int(exp) if exp else 0)
    if not whole.lstrip("0"):  # 0.000123 -> digits "123", n = -(leading zeros of frac)
        n = -(len(frac) - len(frac.lstrip("0"))) + (int(exp) if exp else 0)
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        body = (digits if k == 1 else digits[0] + "." + digits[1:]) + ("e+" if e >= 0 else "e-") + str(abs(e))
    return sign + body


@dataclass(frozen=True)
class Encoded:
    """A JSON value already in its RFC 8785 form (``text``), emitted verbatim: a part shared by
    many values (a spec inside every action of a batch) is encoded once."""

    text: str

    @classmethod
    def of(cls, value: Any) -> Encoded:
        out: list[str] = []
        _encode(value, out)
        return cls("".join(out))


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise CanonicalizationError(f"integer {value} is outside the interoperable range ±(2**53-1)")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CanonicalizationError("object keys must be strings")
        out.append("{")
        # ASCII keys sort the same by UTF-16 code units and by code points (str's own order).
        keys = sorted(value) if all(k.isascii() for k in value) else \
            sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, Encoded):
        out.append(value.text)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value; :class:`CanonicalizationError` if it has none."""
    out: list[str] = []
    _encode(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("strings must not contain lone surrogates") from exc


def digest(data: bytes) -> str:
    """``b3:`` + 64 lowercase hex of BLAKE3-256 of ``data``."""
    return "b3:" + blake3.blake3(data).hexdigest()


def canonical_digest(value: Any) -> str:
    return digest(canonical_bytes(value))
