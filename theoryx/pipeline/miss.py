"""Step 3b, *miss*: validate, store what the run uses, admit on the plan, materialise, execute,
ingest, settle — then record (with the cache entry unless told not to).

Imported only on a miss: it loads jsonschema and the adapters' common code.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from theoryx import adapters
from theoryx.adapters.base import ExecRequest, Outcome, Workspace
from theoryx.adapters.logs import store_log, tail
from theoryx.core import syncpoints
from theoryx.errors import ExecutionTimeout, InputsError, OutOfMemory, ProcessorFailed, SecretsMissing
from theoryx.pipeline import attachments
from theoryx.pipeline.ingest import ingest
from theoryx.pipeline.prepare import Prepared
from theoryx.pipeline.record import success
from theoryx.pipeline.result import RunResult
from theoryx.pipeline.running import RunState, now_ms
from theoryx.spec.model import ProcessorSpec
from theoryx.store.action_cache import ActionResult

RESULT_LIMIT = 1 << 20  # the processor's THEORYX_RESULT file


def execute(run: RunState, prep: Prepared, *, cache_write: bool = True) -> RunResult:
    """Run ``prep`` on the request's adapter and record it. With ``cache_write`` False (audits)
    the cache entry is left alone. Raises the step's :class:`TheoryxError`; the plan is settled
    (or its reservation released) whatever happens once it was admitted."""
    stores, req, lease = run.stores, run.request, run.lease
    spec, action = prep.spec, prep.action
    validate(spec, prep.inputs)
    adapters.check_options(req.adapter, req.adapter_options, spec)   # before anything is written
    adapter = adapters.get(req.adapter, stores=stores, build=req.build, workers=req.workers)
    env = secrets(spec, req.adapter)
    # Leased before they are written: gc roots.
    lease.add([action.memo_key, prep.context.cid, *(cid for cid, _ in prep.sources)])
    attachments.store_files(prep.sources, stores.cas)
    action_blob = stores.cas.put_bytes(action.data)
    stores.cas.put_bytes(prep.context.data)
    run.record = run.record.with_(cache="miss", action_cid=action_blob.cid)
    run.charging.admit(spec, prep.inputs, adapter, lease.path.absolute())
    ws = Workspace(stores.home.work / run.execution_id)
    outcome: Outcome | None = None
    result: dict[str, Any] = {}
    try:
        materialise(run, ws, prep)
        syncpoints.point("before_execute")
        outcome = adapter.execute(ExecRequest(
            spec=spec, action=action.body, inputs=prep.inputs, workspace=ws,
            execution_id=run.execution_id, write_prefix=run.record.write_prefix or "",
            seed=req.seed, secrets=env, options=dict(req.adapter_options), stream=req.stream, workers=req.workers,
        ))
        stdout = store_log(ws.stdout, stores.cas, env.values())
        stderr = store_log(ws.stderr, stores.cas, env.values())
        lease.add(c for c in (stdout, stderr) if c)
        run.record = run.record.with_(stdout_cid=stdout, stderr_cid=stderr, exit_code=outcome.exit_code,
                                      log_truncated=dict(outcome.log_dropped) or None)
        result = read_result(ws)
        run.record = run.record.with_(usage=result.get("usage") or {})
        check(run, outcome, spec)
        manifest = ingest(ws.outputs, spec, run.record.write_prefix or "", stores.cas)
        lease.add([manifest.cid, *(o.cid for o in manifest.outputs)])
        syncpoints.point("after_ingest")
    except BaseException:
        cost = run.charging.settle_after_failure(spec, prep.inputs, adapter, outcome, result)
        if cost is not None:
            run.record = run.record.with_(cost_micros=cost, overrun_micros=run.charging.overrun_micros)
        raise
    finally:
        remove_tree(ws.root)
    cost = run.charging.settle(spec, prep.inputs, adapter, outcome, result, status="success")
    rec = run.record.with_(cost_micros=cost, overrun_micros=run.charging.overrun_micros, outputs=manifest.outputs,
                           manifest_cid=manifest.cid)
    now = now_ms()
    entry = ActionResult(
        memo_key=action.memo_key, action_cid=action_blob.cid, manifest_cid=manifest.cid,
        outputs=manifest.outputs, exit_code=outcome.exit_code, stdout_cid=rec.stdout_cid,
        stderr_cid=rec.stderr_cid, usage=rec.usage, cost_micros=rec.cost_micros,
        duration_ms=outcome.duration_ms, execution_id=run.execution_id, adapter=req.adapter,
        created_ms=now, last_used_ms=now, input_cids=rec.input_cids,
    )
    return success(run, rec, cache_entry=entry if cache_write else None)


def validate(spec: ProcessorSpec, inputs: Any) -> None:
    """Inputs against the spec's JSON Schema; the first violation, by its JSON pointer."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(spec.inputs_schema)
    errors = sorted(validator.iter_errors(inputs), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        pointer = "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in err.absolute_path)
        raise InputsError(f"inputs invalid for {spec.ref} at '{pointer or '/'}': {err.message}")


def secrets(spec: ProcessorSpec, adapter: str) -> dict[str, str]:
    """The spec's secrets from the environment (by name; values never enter a key or a record).
    The mock adapter needs none."""
    if adapter == "mock":
        return {}
    missing = [n for n in spec.secrets if not os.environ.get(n)]
    if missing:
        raise SecretsMissing(f"Required secret(s) missing: {', '.join(missing)}")
    return {n: os.environ[n] for n in spec.secrets}


def materialise(run: RunState, ws: Workspace, prep: Prepared) -> None:
    """The workspace: only the attachments the action references, hard-linked from the CAS
    (read-only) and hashed there (a corrupt blob is quarantined: ERR_CORRUPT_BLOB), and the
    rewritten inputs."""
    from cas import CorruptBlob
    from theoryx.store.handle import store_error

    for d in (ws.root, ws.inputs, ws.outputs, ws.result_dir):
        d.mkdir(parents=True, exist_ok=True)
    for att in prep.attachments:
        dest = ws.inputs / att.cid / att.filename
        dest.parent.mkdir(exist_ok=True)
        try:
            run.leased(att.cid, partial(run.stores.cas.link_to, att.cid, dest, verify=True))
        except CorruptBlob as exc:
            raise store_error(exc, f"attachment {att.filename} ({att.cid})") from None
    ws.inputs_json.write_text(json.dumps(prep.inputs, sort_keys=True))


def read_result(ws: Workspace) -> dict[str, Any]:
    """The processor's optional ``THEORYX_RESULT``: a regular file of at most 1 MiB of JSON.
    Opened without following links (the container controls that directory, and a link could
    point at a host file); anything else is ignored."""
    try:
        fd = os.open(ws.result, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        value = json.loads(os.read(fd, RESULT_LIMIT))
    except ValueError:
        return {}
    finally:
        os.close(fd)
    return value if isinstance(value, dict) else {}


def check(run: RunState, outcome: Outcome, spec: ProcessorSpec) -> None:
    """Map an unsuccessful outcome to its error, with the last lines of stderr."""
    if outcome.ok:
        return
    stderr_cid = run.record.stderr_cid
    err_tail = tail(run.stores.cas.read(stderr_cid)) if stderr_cid else ""
    suffix = f"\n--- stderr (last lines) ---\n{err_tail}" if err_tail else ""
    if outcome.timed_out:
        limit = outcome.meta.get("timeout_s", spec.runtime.timeout)
        raise ExecutionTimeout(f"processor {spec.ref} timed out after {limit}s and was killed{suffix}")
    if outcome.oom_killed:
        raise OutOfMemory(
            f"processor {spec.ref} was killed for exceeding its memory limit ({spec.runtime.memory} MiB){suffix}"
        )
    raise ProcessorFailed(f"processor {spec.ref} failed with exit code {outcome.exit_code}{suffix}")


def remove_tree(path: Path) -> None:
    """Remove a workspace, including read-only files and directories left by a container."""
    if not path.exists():
        return

    def onerror(func: Callable[..., Any], p: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p):
            os.chmod(p, 0o700)
        func(p)

    shutil.rmtree(path, onerror=onerror)

