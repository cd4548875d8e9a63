"""A miss stores its blobs without a fsync each and makes them durable with one filesystem sync
before the record and the cache entry that name them commit (``cas.Store.deferred``): no committed
record or cache entry ever names a blob that a power failure could lose.

A power failure cannot be staged in a test; what is checked is the order of events: every blob a
committed record or cache entry names was in the store when a sync began that completed before
the commit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from theoryx_testing import HELLO, REGISTRY

import theoryx
from cas import syncing
from theoryx.errors import TheoryxError
from theoryx.store import executions, receipts
from theoryx.store.executions import ExecutionRecord, Recording

pytestmark = pytest.mark.skipif(syncing.syncfs() is None, reason="no syncfs on this platform")


@dataclass
class Ledger:
    home: Path
    durable: set[str] = field(default_factory=set)   # cids covered by a completed sync
    syncs: int = 0
    fsyncs: int = 0
    commits: list[set[str]] = field(default_factory=list)

    def blobs(self) -> set[str]:
        root = self.home / "cas-v1" / "blobs"
        if not root.is_dir():
            return set()
        return {f"b3:{shard.name}{f.name}" for shard in root.iterdir() for f in shard.iterdir()}


def named(rec: ExecutionRecord) -> set[str]:
    cids = set(receipts.execution_files(rec).values()) | {o.cid for o in rec.outputs} | set(rec.input_cids)
    return cids | ({rec.manifest_cid} if rec.manifest_cid else set())


@pytest.fixture
def ledger(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    book = Ledger(home)
    real_sync, real_fsync, real_record_many = syncing.sync_filesystem, os.fsync, executions.record_many

    def sync(path: Path) -> None:
        present = book.blobs()       # what is in the store when the sync begins...
        real_sync(path)
        book.durable |= present      # ...is durable when it ends
        book.syncs += 1

    def fsync(fd: int) -> None:
        book.fsyncs += 1
        real_fsync(fd)

    def record_many(db: object, recordings: list[Recording]) -> None:
        names: set[str] = set()
        for r in recordings:
            names |= named(r.rec)
            if r.cache_entry is not None:
                names |= set(r.cache_entry.blobs())
        lost = names - book.durable
        assert not lost, f"committed before a sync covered them: {sorted(lost)}"
        book.commits.append(names)
        real_record_many(db, recordings)  # type: ignore[arg-type]

    monkeypatch.setattr(syncing, "sync_filesystem", sync)
    monkeypatch.setattr(syncing, "dirty_bytes", lambda: 0)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(executions, "record_many", record_many)
    yield book


def test_a_miss_commits_only_blobs_a_completed_sync_covered_and_fsyncs_none(home: Path, ledger: Ledger) -> None:
    result = theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    assert result.cache == "miss"
    assert ledger.commits and ledger.commits[-1] >= {o.cid for o in result.outputs}
    assert ledger.syncs == 1, "one sync for the whole miss"
    assert ledger.fsyncs == 0, "no blob fsynced on its own"


def test_misses_of_a_batch_on_two_threads_commit_only_synced_blobs(home: Path, ledger: Ledger) -> None:
    items = [{"inputs": {"messages": [{"role": "user", "content": f"item {i}"}]}} for i in range(12)]
    with theoryx.Session(home, registry=str(REGISTRY)) as session:
        results = list(session.map("llm/litellm@1", items, adapter="mock", jobs=2))
    assert all(r.ok for r in results) and len(ledger.commits) == 12
    assert 1 <= ledger.syncs <= 12 and ledger.fsyncs == 0


def test_a_failed_miss_is_recorded_after_its_logs_are_synced(home: Path, ledger: Ledger) -> None:
    with pytest.raises(TheoryxError) as failed:
        theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY),
                    adapter_options={"exit_code": 3})
    assert failed.value.code == "ERR_PROCESSOR_FAILED"
    [names] = ledger.commits
    assert names and ledger.syncs == 1, "the failure record names the stored logs"
