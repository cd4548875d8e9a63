"""Pins: executions whose blobs gc keeps whatever their age or their cache entry's fate.

The ``pins`` database maps an execution id to ``{"pinned_ms": int, "note": str}``. A pinned
execution keeps every blob its record names (outputs, manifest, logs, action pre-image and what
the pre-image names, inputs, receipt, index); ``--max-age`` keeps the record itself and any cache
entry that holds the same result. Pinning never restores a blob that gc already removed: ``pin``
reports those as missing.

This module owns the ``pins`` table (:data:`theoryx.store.db.OWNERS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import lmdb

from theoryx.errors import NotFound
from theoryx.store import executions
from theoryx.store.db import Database


@dataclass(frozen=True)
class Pin:
    """One pinned execution."""

    execution_id: str
    pinned_ms: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"execution_id": self.execution_id, "pinned_ms": self.pinned_ms, "note": self.note}


def pin(db: Database, execution: str, note: str = "") -> Pin:
    """Pin ``execution`` (an id or a unique prefix of one); pinning twice keeps the first time,
    and a new non-empty ``note`` replaces the old one."""
    rec = executions.get(db, execution)
    existing = db.get("pins", rec.execution_id)
    if existing is not None:
        kept = Pin(rec.execution_id, int(existing["pinned_ms"]), note or str(existing.get("note", "")))
        if note and note != existing.get("note"):
            db.put("pins", rec.execution_id, {"pinned_ms": kept.pinned_ms, "note": note})
        return kept
    value = Pin(rec.execution_id, int(time.time() * 1000), note)
    db.put("pins", rec.execution_id, {"pinned_ms": value.pinned_ms, "note": note})
    return value


def unpin(db: Database, execution: str) -> str:
    """Unpin ``execution``; return its full id. :class:`NotFound` if it was not pinned."""
    full = execution if db.get("pins", execution) is not None else _pinned_id(db, execution)
    db.delete("pins", full)
    return full


def pins(db: Database) -> list[Pin]:
    """Every pin, oldest execution first."""
    return [Pin(k, int(v["pinned_ms"]), str(v.get("note", ""))) for k, v in db.items("pins")]


def pinned_ids(db: Database) -> set[str]:
    return {k for k, _ in db.items("pins")}


def pinned_ids_in(txn: lmdb.Transaction, db: Database) -> frozenset[str]:
    """The pinned execution ids, read in the caller's transaction ``txn``."""
    return frozenset(bytes(key).decode() for key, _ in txn.cursor(db=db.dbs["pins"]))


def count(db: Database) -> int:
    """How many executions are pinned."""
    return db.count("pins")


def _pinned_id(db: Database, prefix: str) -> str:
    matches = [k for k, _ in db.items("pins", prefix=prefix)] if len(prefix) >= 6 else []
    if len(matches) != 1:
        hint = " (ambiguous prefix)" if matches else ""
        raise NotFound(f"execution {prefix!r} is not pinned{hint}; see `theoryx pins`")
    return matches[0]
