"""Money: integer micro-USD wherever it is stored or computed; dollars only at the edges.

``parse_usd("5.25") == 5_250_000``. Amounts are capped at ``MAX_MICROS`` (2**53 - 1 micro-USD,
about $9 billion) so that every stored amount has an exact RFC 8785 form for the ledger's hashes.
Fractional prices (per token, per second) are multiplied as :class:`~decimal.Decimal` and turned
into micros once, rounding up (:func:`ceil_micros`): a budget is never under-charged by rounding.

What a processor reports it cost (``cost_usd`` in its ``THEORYX_RESULT``) is untrusted input:
:func:`check_reported` accepts a finite, non-negative JSON number of at most
:data:`MAX_REPORTED_MICROS` ($10,000) and refuses anything else (a string, ``true``, NaN,
infinity, a negative number, ``1e308``), saying why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from theoryx.errors import AmountNegative, AmountNotANumber, AmountTooLarge, AmountTooPrecise

MICROS_PER_USD = 1_000_000
MAX_MICROS = 2**53 - 1
# The most one execution may report having cost. Far above any single call theoryx runs (a day of
# eight H100s on Modal is about $760), far below MAX_MICROS: a report above it is a bug or a lie,
# and charging it would wreck the plan's totals (1e308 once charged $9,007,199,254).
MAX_REPORTED_MICROS = 10_000 * MICROS_PER_USD
_AMOUNT = re.compile(r"^\$?([0-9]+)?(?:\.([0-9]*))?\Z")


def parse_usd(text: str, what: str = "amount") -> int:
    """A user's dollar amount (``"5"``, ``"5.25"``, ``"$0.000001"``) as micro-USD.

    Raises :class:`AmountNegative`, :class:`AmountNotANumber`, :class:`AmountTooPrecise` (more than
    6 decimals) or :class:`AmountTooLarge`, each naming ``what``.
    """
    s = text.strip()
    if s.startswith("-"):
        raise AmountNegative(f"{what} must not be negative: {text!r}")
    m = _AMOUNT.match(s)
    if not m or not (m.group(1) or m.group(2)):
        raise AmountNotANumber(f"{what} is not a number of dollars: {text!r} (e.g. 5 or 12.50)")
    whole, frac = (m.group(1) or "0").lstrip("0") or "0", m.group(2) or ""
    if len(frac) > 6:
        raise AmountTooPrecise(f"{what} has more than 6 decimals (the unit is one micro-dollar): {text!r}")
    if len(whole) > len(str(MAX_MICROS)):      # before int(): Python refuses 4,300+ digit strings
        raise AmountTooLarge(f"{what} is too large: {text!r} (at most ${MAX_MICROS // MICROS_PER_USD:,})")
    micros = int(whole) * MICROS_PER_USD + int(frac.ljust(6, "0"))
    if micros > MAX_MICROS:
        raise AmountTooLarge(f"{what} is too large: {text!r} (at most ${MAX_MICROS // MICROS_PER_USD:,})")
    return micros


def ceil_micros(usd: Decimal) -> int:
    """Dollars (exact decimal) as micro-USD, rounded up; capped at :data:`MAX_MICROS`."""
    micros = int((usd * MICROS_PER_USD).to_integral_value(rounding="ROUND_CEILING"))
    return max(0, min(micros, MAX_MICROS))


MAX_USD = Decimal(MAX_MICROS)
"""The largest price or amount of dollars :func:`decimal_usd` returns: a larger one is taken as it.
Any estimate made with it already reaches :data:`MAX_MICROS` (so the result is the same), and the
arithmetic stays within Decimal's exponent range (``"1e999999999"`` raised ``decimal.Overflow``)
and its integers small (``"1e999990"`` took 30 s to turn into micro-dollars)."""


def decimal_usd(value: object) -> Decimal | None:
    """A finite non-negative number (int, float or numeric string) as an exact Decimal, else None;
    at most :data:`MAX_USD`. Floats go through ``repr`` (``0.1`` is 0.1, not its binary expansion)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        d = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return None
    if not d.is_finite() or d < 0:
        return None
    return min(d, MAX_USD)


@dataclass(frozen=True)
class Reported:
    """A processor's reported amount, checked: ``micros`` when accepted, else ``refused`` says
    why (both None: nothing was reported)."""

    micros: int | None = None
    refused: str | None = None


def check_reported(value: object, cap_micros: int = MAX_REPORTED_MICROS) -> Reported:
    """Check an amount of dollars a processor reported (``None`` = not reported). Accepted: an
    int or float, finite, non-negative and, rounded up to micro-USD, at most ``cap_micros``."""
    if value is None:
        return Reported()
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Reported(refused=f"{shown} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        return Reported(refused=f"{shown} is not a finite number")
    if value < 0:
        return Reported(refused=f"{shown} is negative")
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if d * MICROS_PER_USD > cap_micros:
        return Reported(refused=f"{shown} is more than the {dollars(cap_micros)} one execution may report")
    return Reported(micros=ceil_micros(d))


def reported_micros(value: object) -> int | None:
    """A processor-reported ``cost_usd`` as micro-USD (rounded up), or None when it is absent
    or refused by :func:`check_reported`."""
    return check_reported(value).micros


def dollars(micros: int) -> str:
    """Integer micro-USD shown as dollars, e.g. ``$5.250000``."""
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    return f"{sign}${micros // MICROS_PER_USD}.{micros % MICROS_PER_USD:06d}"
