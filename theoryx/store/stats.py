"""``theoryx du`` and ``theoryx stats``: what the store holds and what the cache earned.

The database's figures come from counters maintained with every record
(:func:`theoryx.store.executions.counts`); the usage figures walk the disk.

``du`` walks the disk (blobs, temp files, withdrawn and quarantined blobs, workspaces of killed runs
and lease temp files, the database file); ``stats`` adds the
database's view: cache entries, execution records by outcome, the hit rate (hits over hits and
misses), the money spent by misses and saved by hits (integer micro-USD, summed over the
execution records that remain), and the pins.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from theoryx.store import action_cache, executions, leftovers, pins
from theoryx.store.gc.collect import Tally
from theoryx.store.handle import Stores


@dataclass
class Usage:
    """Bytes on disk, by part of the home."""

    blobs: Tally = field(default_factory=Tally)
    temp_files: Tally = field(default_factory=Tally)
    withdrawn: Tally = field(default_factory=Tally)
    quarantined: Tally = field(default_factory=Tally)
    abandoned_workspaces: Tally = field(default_factory=Tally)
    lease_temp_files: Tally = field(default_factory=Tally)
    database_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        parts = (self.blobs, self.temp_files, self.withdrawn, self.quarantined, self.abandoned_workspaces,
                 self.lease_temp_files)
        return sum(t.bytes for t in parts) + self.database_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"blobs": self.blobs.to_dict(), "temp_files": self.temp_files.to_dict(),
                "withdrawn": self.withdrawn.to_dict(), "quarantined": self.quarantined.to_dict(),
                "abandoned_workspaces": self.abandoned_workspaces.to_dict(),
                "lease_temp_files": self.lease_temp_files.to_dict(),
                "database_bytes": self.database_bytes, "total_bytes": self.total_bytes}


@dataclass
class Stats:
    """The store's usage and the cache's record."""

    usage: Usage
    cache_entries: int = 0
    executions: int = 0
    hits: int = 0
    misses: int = 0
    bypassed: int = 0       # executed without looking the cache up (--no-cache, audit replays)
    failures: int = 0
    spent_micros: int = 0
    saved_micros: int = 0
    pins: int = 0

    @property
    def hit_rate(self) -> float | None:
        """Hits over the runs that looked the cache up and succeeded (hits and misses: not the
        runs that bypassed it); None before any."""
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "usage": self.usage.to_dict(), "cache_entries": self.cache_entries,
            "executions": {"total": self.executions, "hits": self.hits, "misses": self.misses,
                           "bypassed": self.bypassed, "failures": self.failures},
            "hit_rate": self.hit_rate, "spent_micros": self.spent_micros,
            "saved_micros": self.saved_micros, "pins": self.pins,
        }


def usage(stores: Stores) -> Usage:
    """Walk the home's CAS and database files."""
    out = Usage()
    for blob in stores.cas.iter_blobs():
        out.blobs.add(blob.size)
    for path in stores.cas.tmp_files():
        out.temp_files.add(_size(path))
    for cid in stores.cas.withdrawn():
        st = stores.cas.withdrawn_stat(cid)
        out.withdrawn.add(st.st_size if st else 0)
    for _, path in stores.cas.quarantined():
        out.quarantined.add(_size(path))
    now = time.time()
    for ws in leftovers.abandoned_workspaces(stores.home, now):
        out.abandoned_workspaces.add(ws.bytes)
    for temp in leftovers.lease_temps(stores.home, now):
        out.lease_temp_files.add(temp.bytes)
    out.database_bytes = sum(_size(p) for p in stores.home.db.glob("*.mdb"))
    return out


def stats(stores: Stores) -> Stats:
    """:func:`usage` plus the counts and sums of the database."""
    db = stores.db
    c = executions.counts(db)     # maintained: no record is read
    return Stats(usage(stores), cache_entries=action_cache.count(db), pins=pins.count(db), executions=c.total,
                 hits=c.hits, misses=c.misses, bypassed=c.bypassed, failures=c.failures, spent_micros=c.spent_micros,
                 saved_micros=c.saved_micros)


def _size(path: os.PathLike[str] | str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
