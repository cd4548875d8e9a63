"""Values that the readers of the executions table return (:mod:`theoryx.store.executions`):
a page of records, what a world path resolves to, and the maintained counts. Kept apart so that a cache hit, which
never lists, does not define them."""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

    from theoryx.store.executions import ExecutionRecord


@dataclass(frozen=True)
class Page:
    """One page of records, newest first (:func:`page`)."""

    records: tuple[ExecutionRecord, ...]
    next_before: str | None   # ``before`` of the next page: the last id read; None when none is older
    scanned: int              # records read for this page, matching or not


@dataclass(frozen=True)
class PathEntry:
    """What a world path resolves to: the output blob of the newest execution that produced it."""

    path: str
    cid: str
    size: int
    mime: str
    execution_id: str | None

    @classmethod
    def from_value(cls, path: str, value: dict[str, Any]) -> PathEntry:
        return cls(path, str(value.get("cid", "")), int(value.get("size", 0)), str(value.get("mime", "")),
                   value.get("execution_id"))


@dataclass(frozen=True)
class Counts:
    """Execution records by outcome, and the money they spent and saved (micro-USD), over the
    records the home holds (gc'd records no longer count)."""

    total: int
    hits: int
    misses: int
    failures: int
    spent_micros: int
    saved_micros: int
    bypassed: int = 0           # successes that executed without looking the cache up
