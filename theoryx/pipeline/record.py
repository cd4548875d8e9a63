"""The last step of every run, *record*: receipt, output index and execution record (with the
cache entry in the same transaction), or the record of a failure."""

from __future__ import annotations

from theoryx.core import notices, syncpoints
from theoryx.errors import TheoryxError
from theoryx.pipeline.result import RunResult
from theoryx.pipeline.running import RunState
from theoryx.store import executions, receipts
from theoryx.store.action_cache import ActionResult
from theoryx.store.executions import ExecutionRecord


def success(run: RunState, rec: ExecutionRecord, cache_entry: ActionResult | None = None) -> RunResult:
    """Record a success: for a miss, write the receipt and output index, then the record (and
    ``cache_entry``) in one transaction; for a hit, the record alone — its receipt and index are
    derived from it (:mod:`theoryx.store.receipts`) —, through the batch's group recorder if
    there is one (:mod:`theoryx.pipeline.recorder`: hits in groups, misses durable at once but
    sharing their commit with the batch's other misses). Returns the result the caller gets back."""
    stores = run.stores
    rec = rec.with_(status="success", duration_ms=run.elapsed_ms())
    if rec.cache != "hit":
        rec = receipts.write(rec, stores.cas)
        run.lease.add(c for c in (rec.index_cid, rec.receipt_cid) if c)
        stores.cas.sync()  # blobs the miss stored without their own fsync (cas.Store.deferred)
    syncpoints.point("before_record")
    recording = executions.Recording(rec, cache_entry, run.record_paths)
    if run.recorder is None:
        executions.record_many(stores.db, [recording])
    elif rec.cache == "hit" and rec.remote_url is None:
        run.recorder.add(recording)            # may wait for the group's commit
    else:
        # a miss, or a remote hit (its record carries the entry just fetched): durable now, in
        # one transaction with the batch's other items finishing meanwhile
        run.recorder.commit(recording)
    run.record = rec
    return RunResult.of(rec, stores.cas)


def failure(run: RunState, exc: TheoryxError) -> None:
    """Record a failed execution; never raises (recording must not mask the original error)."""
    rec = run.record.with_(status="error", error=exc.to_dict(), duration_ms=run.elapsed_ms())
    exc.plan, exc.cost_micros, exc.overrun_micros = rec.plan, rec.cost_micros, rec.overrun_micros
    try:
        executions.record(run.stores.db, rec)
    except Exception as unrecorded:     # said once, never in place of the run's own error
        notices.warning(f"the failed execution {rec.execution_id} could not be recorded "
                        f"({type(unrecorded).__name__}: {unrecorded}); `theoryx show` will not find it")
