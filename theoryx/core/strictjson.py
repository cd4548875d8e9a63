"""I-JSON parsing (RFC 7493): JSON with no duplicate key in an object, no ``NaN`` or
``Infinity``, and no number beyond a double's range (``1e999`` would read as infinity). A
document whose meaning depends on which of two values a reader keeps (Python's ``json`` keeps
the last, other parsers the first) is refused, never interpreted."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path: the CLI parses inputs with this)
if TYPE_CHECKING:
    from typing import Any


class DuplicateKey(ValueError):
    """An object names ``key`` twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears twice in one object")
        self.key = key


def _reject(const: str) -> Any:
    raise ValueError(f"{const} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text} is beyond the range of a double")
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)                    # built in C; a duplicate shows as a shorter dict
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen.add(key)
    return obj     # pragma: no cover  (a shorter dict always has a repeated key)


def loads(data: str | bytes) -> Any:
    """``json.loads`` refusing duplicate keys (:class:`DuplicateKey`), the constants ``NaN``,
    ``Infinity`` and ``-Infinity``, and numbers that overflow a double (``ValueError``). Raises
    as ``json.loads`` does otherwise (``json.JSONDecodeError``, ``RecursionError`` for nesting
    past the interpreter's limit)."""
    return json.loads(data, parse_constant=_reject, parse_float=_finite, object_pairs_hook=_unique)


__all__ = ["DuplicateKey", "loads"]
