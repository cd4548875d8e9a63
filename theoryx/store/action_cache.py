"""The action cache: memo key -> :class:`ActionResult` (msgpack in the ``ac`` database).

Only successes are stored. ``lookup`` returns a result only if every blob it names is still in
the CAS, outputs at their recorded sizes (bazel-remote's ``GetValidatedActionResult``); otherwise
it is a miss and the action runs again, and the new result replaces the entry.

This module owns the ``ac`` table (:data:`theoryx.store.db.OWNERS`): gc, verify, liveness,
audit and stats go through the functions below, never through the table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import lmdb

from cas import Store
from theoryx.core.frozen import replaced
from theoryx.store.db import Database, pack, unpack

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any, Literal
    Unchanged = Literal["deleted", "changed", "absent"]
    """What :func:`delete_unchanged_in` did: deleted the entry, left it (it changed since it was
    read), or found nothing to delete."""

TABLE = "ac"


@dataclass(frozen=True)
class OutputEntry:
    """One output: its world path, cid, size and mime."""

    path: str
    cid: str
    size: int
    mime: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "cid": self.cid, "size_bytes": self.size, "mime": self.mime}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputEntry:
        return cls(d["path"], d["cid"], int(d["size_bytes"]), d["mime"])


@dataclass(frozen=True)
class ActionResult:
    """What a successful execution produced. Money is integer micro-USD."""

    memo_key: str
    action_cid: str
    manifest_cid: str
    outputs: tuple[OutputEntry, ...]
    exit_code: int
    stdout_cid: str | None
    stderr_cid: str | None
    usage: dict[str, Any]
    cost_micros: int
    duration_ms: int
    execution_id: str
    adapter: str
    created_ms: int
    last_used_ms: int
    input_cids: tuple[str, ...] = ()

    def blobs(self) -> list[str]:
        """Every cid this result needs (a hit requires all of them)."""
        cids = [self.action_cid, self.manifest_cid, *(o.cid for o in self.outputs), *self.input_cids]
        cids += [c for c in (self.stdout_cid, self.stderr_cid) if c]
        return cids

    def to_dict(self) -> dict[str, Any]:
        return {
            "memo_key": self.memo_key, "action_cid": self.action_cid,
            "manifest_cid": self.manifest_cid, "outputs": [o.to_dict() for o in self.outputs],
            "exit_code": self.exit_code, "stdout_cid": self.stdout_cid,
            "stderr_cid": self.stderr_cid, "usage": self.usage, "cost_micros": self.cost_micros,
            "duration_ms": self.duration_ms, "execution_id": self.execution_id,
            "adapter": self.adapter, "created_ms": self.created_ms,
            "last_used_ms": self.last_used_ms, "input_cids": list(self.input_cids),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionResult:
        return cls(
            memo_key=d["memo_key"], action_cid=d["action_cid"], manifest_cid=d["manifest_cid"],
            outputs=tuple(OutputEntry.from_dict(o) for o in d["outputs"]),
            exit_code=d["exit_code"], stdout_cid=d["stdout_cid"], stderr_cid=d["stderr_cid"],
            usage=d["usage"], cost_micros=d["cost_micros"], duration_ms=d["duration_ms"],
            execution_id=d["execution_id"], adapter=d["adapter"], created_ms=d["created_ms"],
            last_used_ms=d["last_used_ms"], input_cids=tuple(d.get("input_cids", ())),
        )

    def used_at(self, ms: int) -> ActionResult:
        """This entry, last used at ``ms`` (a copy, without re-running ``__init__``)."""
        return replaced(self, {"last_used_ms": ms})


def get(db: Database, memo_key: str) -> ActionResult | None:
    """The raw entry (no blob check)."""
    raw = db.get(TABLE, memo_key)
    return None if raw is None else ActionResult.from_dict(raw)


def lookup(db: Database, cas: Store, memo_key: str) -> ActionResult | None:
    """A validated hit: the entry, if every blob it names exists and every output has the size
    the entry records; else None (a miss).

    An output of another size is damaged (truncated, or grown): it is quarantined on the spot
    (:meth:`cas.Store.quarantine`), so the re-execution this miss causes publishes good bytes
    instead of finding the damaged copy in place. Content is not hashed here: a hit must stay
    cheap; every read of the bytes (``cat``, ``export``, ``Output.bytes``) hashes them.
    """
    result = get(db, memo_key)
    return None if result is None else validated(cas, result)


def validated(cas: Store, result: ActionResult) -> ActionResult | None:
    """``result`` (an entry just read with :func:`get`) if its blobs pass :func:`lookup`'s
    checks, else None; a damaged output is quarantined as there."""
    sizes = {o.cid: o.size for o in result.outputs}
    for cid in result.blobs():
        try:
            st = os.stat(cas.fspath(cid))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if cid in sizes and st.st_size != sizes[cid]:
            cas.quarantine(cid, inode=(st.st_dev, st.st_ino))
            return None
    return result


def put(db: Database, result: ActionResult) -> None:
    """Store (or replace) the entry for ``result.memo_key``."""
    db.put(TABLE, result.memo_key, result.to_dict())


def put_in(txn: Any, db: Database, result: ActionResult) -> None:
    """:func:`put` inside the caller's write transaction ``txn`` (one commit with its other writes)."""
    txn.put(result.memo_key.encode(), pack(result.to_dict()), db=db.dbs[TABLE])


def delete(db: Database, memo_key: str) -> bool:
    """Delete the entry for ``memo_key``; False if there was none."""
    return db.delete(TABLE, memo_key)


def delete_unchanged_in(txn: lmdb.Transaction, db: Database, memo_key: str, raw: bytes) -> Unchanged:
    """Inside the caller's write transaction ``txn``: delete the entry for ``memo_key`` only if
    its stored bytes are still ``raw`` (as :func:`raw_entries_in` gave them). A hit rewrites its
    entry, so an entry used since it was read is ``"changed"`` and stays; the read, the
    comparison and the delete are atomic because they share ``txn``."""
    key = memo_key.encode()
    found = txn.get(key, db=db.dbs[TABLE])
    if found is None:
        return "absent"
    if bytes(found) != raw:
        return "changed"
    txn.delete(key, db=db.dbs[TABLE])
    return "deleted"


def raw_entries_in(txn: lmdb.Transaction, db: Database) -> Iterator[tuple[str, ActionResult, bytes]]:
    """``(memo key, entry, stored bytes)`` of every entry in key order, read in ``txn`` (one
    consistent view); the bytes are what :func:`delete_unchanged_in` compares against."""
    for key, value in txn.cursor(db=db.dbs[TABLE]):
        raw = bytes(value)
        yield bytes(key).decode(), ActionResult.from_dict(unpack(raw)), raw


def entries(db: Database) -> list[ActionResult]:
    """Every entry in memo-key order (one read transaction; no blob check)."""
    return [ActionResult.from_dict(v) for _, v in db.items(TABLE)]


def count(db: Database) -> int:
    """How many entries the cache holds."""
    return db.count(TABLE)
