"""The statistics of data/textstats@1: a pure, deterministic function of (bytes, format, top).

Shared by ``run.py`` (in the container) and ``mock.py`` (in the executor's process): standard
library only, no global state touched, no floats left to ``repr``, so the same input gives the
same ``stats.json`` bytes on any machine with the same Python minor version (word splitting and
lower-casing follow that version's Unicode tables).

Definitions (the text is the bytes decoded as UTF-8 with a leading BOM dropped; every byte that
is not valid UTF-8 becomes one U+FFFD and is counted in ``invalid_utf8_bytes``):

- ``bytes``: length of the input; ``chars``: code points of the text;
- ``lines``: ``\\n`` line terminators, plus one if the last line has none (``wc -l`` would not
  count that last line);
- ``words``: whitespace-separated tokens, as ``wc -w``;
- ``top_words``: the ``top`` most common word tokens, lower-cased runs of letters and digits
  (inner apostrophes kept: ``don't``), sorted by (-count, word); ``unique_words`` counts them all;
- ``longest_line``: code points of the longest line (terminator excluded);
- for CSV (RFC 4180 / Excel dialect, first row = header): ``csv.rows`` (data rows),
  ``csv.ragged_rows`` (rows whose length differs from the header's) and per column ``name``,
  ``count`` (non-empty values), ``empty``, ``distinct``, ``numeric`` (values that are finite
  decimal numbers) and, when ``numeric`` > 0, ``min``/``max``/``mean`` as strings formatted
  ``%.12g`` (mean computed with ``math.fsum``, so independent of summation order). A field over
  the csv module's default size limit (128 KiB) is reported as malformed CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

FORMATS = ("auto", "text", "csv")
DEFAULT_TOP = 10
MAX_TOP = 1000
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_ESCAPED = re.compile("[\udc80-\udcff]")
_CSV_MIMES = frozenset({"text/csv", "application/csv"})


def choose_format(requested: str, filename: str = "", mime: str | None = None) -> str:
    """``"text"`` or ``"csv"``: ``requested`` unless it is ``"auto"``, in which case CSV is chosen
    for a CSV mime or a ``.csv`` name. Raises ``ValueError`` for an unknown format."""
    if requested not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {requested!r}")
    if requested != "auto":
        return requested
    mime = (mime or "").split(";")[0].strip().lower()
    is_csv = mime in _CSV_MIMES or PurePosixPath(filename).suffix.lower() == ".csv"
    return "csv" if is_csv else "text"


def compute(data: bytes, fmt: str, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """Statistics of ``data`` read as ``fmt`` (``"text"`` or ``"csv"``), with the ``top`` most
    common words (0 <= top <= 1000). Raises ``ValueError`` for a bad ``fmt``/``top`` or a CSV the
    csv module cannot parse."""
    if fmt not in ("text", "csv"):
        raise ValueError(f"fmt must be 'text' or 'csv', got {fmt!r}")
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP:
        raise ValueError(f"top must be an integer from 0 to {MAX_TOP}, got {top!r}")
    text, invalid = _decode(data)
    words = Counter(w.lower() for w in _WORD.findall(text))
    lines = text.split("\n")
    stats: dict[str, Any] = {
        "format": fmt,
        "bytes": len(data),
        "chars": len(text),
        "lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        "words": len(text.split()),
        "longest_line": max((len(line.rstrip("\r")) for line in lines), default=0),
        "unique_words": len(words),
        "top_words": [{"word": w, "count": n}
                      for w, n in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
        "invalid_utf8_bytes": invalid,
    }
    if fmt == "csv":
        stats["csv"] = csv_summary(text)
    return stats


def csv_summary(text: str) -> dict[str, Any]:
    """Row count and per-column summaries of CSV ``text`` (first row = header)."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ValueError(f"malformed CSV: {exc}") from exc
    if not rows:
        return {"rows": 0, "ragged_rows": 0, "columns": []}
    header, body = rows[0], rows[1:]
    width = max(len(header), *(len(r) for r in body)) if body else len(header)
    columns = []
    for i in range(width):
        name = header[i] if i < len(header) else ""
        values = [r[i] for r in body if i < len(r)]
        columns.append({"index": i, "name": name, **_column(values, len(body))})
    return {"rows": len(body), "ragged_rows": sum(1 for r in body if len(r) != len(header)),
            "columns": columns}


def render(stats: dict[str, Any]) -> bytes:
    """The exact bytes of ``stats.json``: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(stats, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _column(values: list[str], rows: int) -> dict[str, Any]:
    filled = [v for v in values if v.strip()]
    parsed = (float(v.strip()) for v in filled if _NUMBER.fullmatch(v.strip()))
    numbers = [x for x in parsed if math.isfinite(x)]   # "1e999" parses to inf
    summary: dict[str, Any] = {"count": len(filled), "empty": rows - len(filled),
                               "distinct": len(set(filled)), "numeric": len(numbers)}
    if numbers:
        summary.update(min=_fmt(min(numbers)), max=_fmt(max(numbers)),
                       mean=_fmt(math.fsum(numbers) / len(numbers)))
    return summary


def _fmt(x: float) -> str:
    return format(x + 0.0, ".12g")   # + 0.0 turns -0.0 into 0.0


def _decode(data: bytes) -> tuple[str, int]:
    """Text and the number of bytes that were not valid UTF-8 (each became one U+FFFD)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # surrogateescape maps each invalid byte to one lone surrogate, which valid UTF-8 never
    # decodes to: count and replace them in linear time, without registering a codec handler.
    text = data.decode("utf-8", errors="surrogateescape")
    text, invalid = _ESCAPED.subn("\ufffd", text)
    return text, invalid
