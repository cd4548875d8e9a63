"""Where two JSON values differ: each difference named by its path, with both sides.

Leaves compare by their RFC 8785 form, so ``1`` and ``1.0`` are equal (they hash the same in a
memo key) while ``1`` and ``true`` are not. A path renders as a JSON pointer (RFC 6901, for
inputs) or a dotted path (``runtime.timeout``, ``outputs[0].mime``, for spec fields).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from theoryx.core.canonical import canonical_bytes

Path = tuple[str | int, ...]


class _Absent:
    """The side of a difference where the key or item does not exist."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Delta:
    """One difference: ``old`` at ``path`` in the first value became ``new`` in the second."""

    path: Path
    old: Any
    new: Any


def _same(a: Any, b: Any) -> bool:
    try:
        return canonical_bytes(a) == canonical_bytes(b)
    except ValueError:
        return bool(a == b and type(a) is type(b))


def deltas(a: Any, b: Any, *, atom: Callable[[Any], bool] | None = None, path: Path = ()) -> list[Delta]:
    """Every difference between ``a`` and ``b``, in key order. A value for which ``atom`` is true
    (on either side) is compared whole, as one difference, instead of being descended into."""
    is_atom = atom is not None and (atom(a) or atom(b))
    if not is_atom and isinstance(a, dict) and isinstance(b, dict):
        out: list[Delta] = []
        for key in sorted(set(a) | set(b)):
            out += deltas(a.get(key, ABSENT), b.get(key, ABSENT), atom=atom, path=(*path, key))
        return out
    if not is_atom and isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            out += deltas(a[i] if i < len(a) else ABSENT, b[i] if i < len(b) else ABSENT,
                          atom=atom, path=(*path, i))
        return out
    if a is ABSENT or b is ABSENT:
        return [] if a is b else [Delta(path, a, b)]
    return [] if _same(a, b) else [Delta(path, a, b)]


def pointer(path: Path) -> str:
    """RFC 6901 JSON pointer (``""`` is the whole value)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def dotted(path: Path) -> str:
    """``runtime.timeout``, ``outputs[0].mime``; keys that are not identifiers are quoted."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.replace("_", "a").replace("-", "a").isalnum():
            out += f".{p}" if out else p
        else:
            out += f"[{json.dumps(p)}]"
    return out


def show(value: Any, limit: int = 80) -> str:
    """A short one-line rendering of a value for messages."""
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
