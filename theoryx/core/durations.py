"""Durations and sizes as users write them on the command line, and sizes as people read them.

    DUR   a number and a unit: ``90s``, ``30m``, ``2h``, ``7d``, ``1w`` (a bare number is seconds)
    SIZE  a number and an optional binary unit: ``512``, ``500K``, ``500M``, ``2G``, ``1T``
          (``M``, ``MB``, ``MiB`` all mean 2**20 bytes, as du and Bazel's disk cache read them)
"""

from __future__ import annotations

import math
import re

from theoryx.errors import UsageError

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)", re.ASCII)
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(?:i?b)?", re.ASCII)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``30m``, ``2h``, ``7d``); :class:`UsageError` if it is not a duration
    or too long for a finite number of seconds (a float's infinity is no JSON number)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(f"{text!r} is not a duration (examples: 90s, 30m, 2h, 7d)")
    seconds = float(match[1]) * _SECONDS[match[2]]
    if not math.isfinite(seconds):
        raise UsageError(f"{text!r} is too long a duration")
    return seconds


MAX_SIZE = float(1024 ** 6)
"""Sizes from :func:`parse_size` stay below 1 EiB (1024 PiB): an integer, whatever was typed."""


def parse_size(text: str) -> int:
    """Bytes in ``text`` (``500M``, ``2G``); :class:`UsageError` if it is not a size."""
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(f"{text!r} is not a size (examples: 500M, 2G, 1T)")
    size = float(match[1]) * 1024 ** _POWERS[match[2]]
    if not size < MAX_SIZE:
        raise UsageError(f"{text!r} is too large a size (less than 1024P)")
    return int(size)


def human_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KiB``; exact below 1 KiB."""
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def human_duration(seconds: float) -> str:
    """``5400`` -> ``1.5h``: the largest unit that keeps the number at least 1."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
