"""Audit records: the verdict of each ``theoryx audit``, linked to the execution it audited.

Stored msgpack-encoded in the ``audits`` database under ``<execution id>/<audit id>``; audit ids
sort by time (like execution ids), so a prefix scan lists one execution's audits oldest first.

Verdicts: ``reproducible`` (every output has the recorded cid), ``diverged`` (some output differs,
is missing or is extra, or the re-execution failed), ``stochastic`` (the spec declares the
processor stochastic: differences are expected and reported, not a failure) and ``unauditable``
(the audit could not be carried out: ``reason`` says why, ``changes`` what changed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from theoryx.store.db import Database

VERDICTS = ("reproducible", "diverged", "stochastic", "unauditable")


@dataclass(frozen=True)
class OutputDiff:
    """One output path whose replay does not match: ``differs``, ``missing`` or ``extra``.
    ``recorded``/``replayed`` are ``{"cid", "size_bytes", "mime"}`` (None on the absent side);
    ``diff`` is a short unified diff for small text outputs."""

    path: str
    status: str
    recorded: dict[str, Any] | None
    replayed: dict[str, Any] | None
    diff: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditRecord:
    """What one audit found. ``memo_key`` is the recorded key; ``audited_memo_key`` the key of
    the action that was re-executed (different under ``--current`` when the processor changed)."""

    audit_id: str
    execution_id: str
    ref: str
    verdict: str
    adapter: str
    recorded_adapter: str
    memo_key: str
    created_ms: int
    audited_memo_key: str | None = None
    current: bool = False
    stochastic: bool = False
    replay_execution: str | None = None
    outputs_compared: int = 0
    differences: tuple[OutputDiff, ...] = ()
    changes: tuple[dict[str, Any], ...] = ()
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["differences"] = [x.to_dict() for x in self.differences]
        d["changes"] = list(self.changes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditRecord:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["differences"] = tuple(OutputDiff(**x) for x in d.get("differences", ()))
        kw["changes"] = tuple(d.get("changes", ()))
        return cls(**kw)

    def summary(self) -> str:
        """One line: verdict, where, and the gist."""
        text = f"{self.verdict} on {self.adapter}"
        if self.replay_execution:
            text += f" (replay {self.replay_execution})"
        if self.verdict in ("diverged", "stochastic") and self.differences:
            text += f": {len(self.differences)} of {self.outputs_compared} output path(s) differ"
        if self.reason:
            text += f": {self.reason.splitlines()[0]}"
        if self.audited_memo_key and self.audited_memo_key != self.memo_key:
            text += f" [audited against the current spec, key {self.audited_memo_key}]"
        return text


def _key(rec: AuditRecord) -> str:
    return f"{rec.execution_id}/{rec.audit_id}"


def save(db: Database, rec: AuditRecord) -> None:
    db.put("audits", _key(rec), rec.to_dict())


def for_execution(db: Database, execution_id: str) -> list[AuditRecord]:
    """Every audit of ``execution_id``, oldest first."""
    return [AuditRecord.from_dict(v) for _, v in db.items("audits", prefix=f"{execution_id}/")]
