"""Canonical bytes and digests: RFC 8785 (JSON Canonicalization Scheme) + BLAKE3.

Any auditor can recompute a memo key in any language: ``b3:`` + hex(BLAKE3-256(JCS(action))).

The encoder is written here (stdlib only) because it runs on every cache hit and the
``rfc8785`` package costs more to import than the whole rest of a hit; tests check it
byte-for-byte against ``rfc8785.dumps`` on generated values. Rules (RFC 8785 §3.2): object keys
sorted by UTF-16 code units, strings escaped as ECMAScript ``JSON.stringify`` does, numbers
formatted as ECMAScript ``Number.prototype.toString``, integers limited to ±(2**53 - 1).

Two encoders give the same text. :func:`_encode` is the reference, pure Python. The fast path
(:func:`_plain` then the C encoder of the ``json`` module, ``_json.make_encoder``; around it
:func:`_object` for an action's top-level object, whose spec, image and env are pre-encoded
:class:`Encoded` parts) is taken only when one pass over the value proves that the C encoder's
text is the RFC 8785 text (see :func:`_plain` for the argument); otherwise the reference
encoder runs, so a value without a canonical form gets its error (a lone surrogate in a string
passes either encoder and is refused by the same UTF-8 encoding after both). Tests compare the
two on generated values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import blake3

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

try:  # CPython's C accelerator of ``json`` (without it, only the reference encoder runs)
    from _json import encode_basestring as _c_string
    from _json import make_encoder as _make_c_encoder
except ImportError:  # pragma: no cover - other interpreters
    _c_string = _make_c_encoder = None  # type: ignore[assignment,misc]

MAX_SAFE_INT = 2**53 - 1
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t"})


class CanonicalizationError(ValueError):
    """A value has no RFC 8785 form (NaN, infinity, huge integer, non-string key, lone surrogate)."""



def int_text(value: int) -> str:
    """``value`` in decimal for a message, or its size when Python would refuse to convert it
    (over 4,300 digits: ``ValueError``)."""
    if value.bit_length() <= 14_000:
        return str(value)
    return f"of about {int(value.bit_length() * 0.30103):,} digits"

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
        return cls(_text(value))


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
            raise CanonicalizationError(f"integer {int_text(value)} is outside the interoperable range ±(2**53-1)")
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


_SLOW = object()  # what _plain answers for a value the fast path must not encode


def _plain(value: Any) -> Any:
    r"""``value``, or a copy of it with integral floats as ints, if the C encoder's text of it is
    its RFC 8785 text; else ``_SLOW``.

    The argument, type by type (exact types only: a subclass may override what either encoder
    calls, so it takes the reference encoder). ``str``: both escape exactly ``"``, ``\`` and
    U+0000-U+001F (``\b \f \n \r \t``, others as lowercase ``\u00xx``) and nothing else; a lone
    surrogate passes both and fails the same UTF-8 encoding afterwards. ``None``, ``bool``: the
    same words. ``int`` within ±(2**53-1): the same digits. ``float``: Python's ``repr`` and
    ECMAScript agree on a finite non-integral ``x`` with ``1e-4 <= |x|`` (such ``x`` is below
    2**52, so neither uses an exponent, and both give the shortest round-trip digits); an integral
    ``|x| <= 2**53-1`` is written as ``int(x)`` (ECMAScript writes its exact integer, ``-0.0`` as
    ``0``); any other float takes the reference encoder. ``list``, ``tuple``: both write arrays
    of the items in order. ``dict``: keys must be ``str`` without a character from U+D800 up,
    for which code point order is UTF-16 code unit order (RFC 8785's); the C encoder sorts
    (key, value) pairs, which distinct keys order alone. Both write the same separators.
    :class:`Encoded` (which the C encoder cannot write) takes the reference encoder here; see
    :func:`_object` for the parts of an action."""
    t = type(value)
    if t is dict or t is list or t is tuple:
        is_dict = t is dict
        copy: Any = None
        for key, item in value.items() if is_dict else enumerate(value):
            if is_dict and (type(key) is not str or not (key.isascii() or max(key) < "\ud800")):
                return _SLOW
            t = type(item)
            if t is str or t is bool or item is None or (t is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT):
                continue
            new = _plain(item)
            if new is not item:
                if new is _SLOW:
                    return _SLOW
                if copy is None:
                    copy = dict(value) if is_dict else list(value)
                copy[key] = new
        return value if copy is None else copy
    if t is str or t is bool or value is None:
        return value
    if t is int:
        return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else _SLOW
    if t is float:
        size = abs(value)
        if size < 1e16:  # also excludes NaN and infinities
            if value % 1:
                return value if size >= 1e-4 else _SLOW
            if size <= MAX_SAFE_INT:
                return int(value)
        return _SLOW
    return _SLOW


def _fast(value: Any) -> str | None:
    """The RFC 8785 text of ``value`` by the C encoder, or ``None`` where :func:`_plain` refuses."""
    plain = _plain(value)
    return None if plain is _SLOW or _C_ENCODE is None else "".join(_C_ENCODE(plain, 0))


def _object(value: dict[Any, Any]) -> str | None:
    """The RFC 8785 text of an object whose values include :class:`Encoded` parts (an action's
    pre-image), or ``None`` where the reference encoder must run. Keys pass :func:`_plain`'s
    test, so ``sorted`` gives RFC 8785's order; keys and strings are escaped by the C encoder's
    string function (the same as the reference's); parts are written verbatim and integers
    within the range as ``str`` gives them, as the reference does; other values take
    :func:`_fast`."""
    for key in value:
        if type(key) is not str or not (key.isascii() or max(key) < "\ud800"):
            return None
    members = []
    for key in sorted(value):
        item = value[key]
        t = type(item)
        if t is Encoded:
            text = item.text
        elif t is str:
            text = _c_string(item)
        elif t is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
            text = str(item)
        else:
            found = _fast(item)
            if found is None:
                return None
            text = found
        name = _NAMES.get(key)
        if name is None:
            if len(_NAMES) >= 1024:
                _NAMES.clear()
            name = _NAMES[key] = _c_string(key) + ":"
        members.append(name + text)
    return "{" + ",".join(members) + "}"


_NAMES: dict[str, str] = {}  # key -> its text and ":" (an action's keys, written on every hit)


def _not_plain(value: Any) -> Any:
    """The C encoder's ``default``: never called, as :func:`_plain` lets only JSON types through."""
    raise TypeError(f"{type(value).__name__} reached the C encoder")


_C_ENCODE = None if _make_c_encoder is None else \
    _make_c_encoder(None, _not_plain, _c_string, None, ":", ",", True, False, False)


def _text(value: Any) -> str:
    """The RFC 8785 text of ``value`` (which may hold lone surrogates, refused when encoded to
    UTF-8): the fast path where it applies, else the reference encoder."""
    if _C_ENCODE is not None:
        try:
            if type(value) is dict and Encoded in map(type, value.values()):
                text = _object(value)
            else:
                text = _fast(value)
            if text is not None:
                return text
        except RecursionError:  # too deep for the walk: the reference encoder decides
            pass
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value; :class:`CanonicalizationError` if it has none."""
    try:
        return _text(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("strings must not contain lone surrogates") from exc


def digest(data: bytes) -> str:
    """``b3:`` + 64 lowercase hex of BLAKE3-256 of ``data``."""
    return "b3:" + blake3.blake3(data).hexdigest()


def canonical_digest(value: Any) -> str:
    return digest(canonical_bytes(value))
