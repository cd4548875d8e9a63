"""Step 3a, *hit*: answer from the action cache — nothing executes, the plan records the saving."""

from __future__ import annotations

from theoryx.pipeline.record import success
from theoryx.pipeline.result import RunResult
from theoryx.pipeline.running import RunState, now_ms
from theoryx.store.action_cache import ActionResult


def answer(run: RunState, result: ActionResult, *, remote_url: str | None = None) -> RunResult:
    """Record a hit of ``result``: cost 0, saved = the producer's cost; ``--stream`` replays the
    stored stdout; the cache entry's last use is refreshed in the same transaction.
    ``remote_url`` names the team cache the entry was just fetched from (a remote hit)."""
    stores, stream = run.stores, run.request.stream
    if stream is not None and result.stdout_cid:
        cid = result.stdout_cid
        stream("stdout", run.leased(cid, lambda: stores.cas.read(cid)))
    rec = run.record.with_(
        cache="hit", action_cid=result.action_cid, outputs=result.outputs,
        manifest_cid=result.manifest_cid, stdout_cid=result.stdout_cid,
        stderr_cid=result.stderr_cid, exit_code=result.exit_code, usage=result.usage,
        saved_micros=result.cost_micros, source_execution=result.execution_id, remote_url=remote_url,
    )
    run.charging.hit(result.cost_micros, result.execution_id)
    return success(run, rec, cache_entry=result.used_at(now_ms()))
