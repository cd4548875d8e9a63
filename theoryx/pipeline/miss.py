"""Step 3b, *miss*: validate, store what the run uses, admit on the plan, materialise, execute,
ingest, settle — then record (with the cache entry unless told not to).

Imported only on a miss: it loads jsonschema and the adapters' common code.
"""

from __future__ import annotations

import json
import os
import stat
from functools import partial
from typing import Any

from theoryx import adapters
from theoryx.adapters.base import Adapter, ExecRequest, Outcome, Workspace, billed_outcome
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
from theoryx.store.db import pack
from theoryx.store.leftovers import remove_tree

RESULT_LIMIT = 1 << 20  # the processor's THEORYX_RESULT file


def execute(run: RunState, prep: Prepared, *, cache_write: bool = True) -> RunResult:
    """Run ``prep`` on the request's adapter and record it. With ``cache_write`` False (audits)
    the cache entry is left alone. Raises the step's :class:`TheoryxError`; the plan is settled
    (or its reservation released) whatever happens once it was admitted."""
    stores, req, spec = run.stores, run.request, prep.spec
    validate(spec, prep.inputs)
    adapters.check_options(req.adapter, req.adapter_options, spec)   # before anything is written
    adapter = adapters.get(req.adapter, stores=stores, build=req.build, workers=req.workers)
    env = secrets(spec, req.adapter)
    # The run's blobs are stored without a fsync each: record.success makes them durable with one
    # sync before the record and the cache entry that name them commit (on a failure, leaving the
    # block does, before the failure is recorded).
    with stores.cas.deferred():
        return _run(run, prep, adapter, env, cache_write=cache_write)


def _run(run: RunState, prep: Prepared, adapter: Adapter, env: dict[str, str], *, cache_write: bool) -> RunResult:
    """:func:`execute` once the request is checked: store, admit, execute, ingest, settle, record."""
    stores, req, lease = run.stores, run.request, run.lease
    spec, action = prep.spec, prep.action
    # Leased before they are written: gc roots.
    lease.add([action.memo_key, prep.context.cid, *(cid for cid, _ in prep.sources)])
    attachments.store_files(prep.sources, stores.cas)
    action_blob = stores.cas.put_bytes(action.data)
    stores.cas.put_bytes(prep.context.data)
    # "bypass": executed without looking the cache up (--no-cache, an audit's replay); it does not
    # count against the hit rate
    bypass = run.request.no_cache or not cache_write
    run.record = run.record.with_(cache="bypass" if bypass else "miss", action_cid=action_blob.cid)
    run.charging.admit(spec, prep.inputs, adapter, lease.path.absolute())
    ws = Workspace(run.workspace)
    outcome: Outcome | None = None
    result: dict[str, Any] = {}
    try:
        materialise(run, ws, prep, in_process=adapter.in_process)
        syncpoints.point("before_execute")
        outcome = adapter.execute(ExecRequest(
            spec=spec, action=action.body, inputs=prep.inputs, workspace=ws,
            execution_id=run.execution_id, write_prefix=run.record.write_prefix or "",
            seed=req.seed, secrets=env, options=dict(req.adapter_options), stream=req.stream, workers=req.workers,
            context=prep.context,
        ))
        stdout = store_log(ws.stdout, stores.cas, env.values())
        stderr = store_log(ws.stderr, stores.cas, env.values())
        lease.add(c for c in (stdout, stderr) if c)
        run.record = run.record.with_(stdout_cid=stdout, stderr_cid=stderr, exit_code=outcome.exit_code,
                                      log_truncated=dict(outcome.log_dropped) or None)
        result = _result(outcome, ws)
        run.record = run.record.with_(usage=usage_of(result))
        check(run, outcome, spec)
        # A worker keeps running after it answered: its files are copied, never moved, so a
        # descriptor it kept cannot change a stored blob.
        manifest = ingest(ws.outputs, spec, run.record.write_prefix or "", stores.cas,
                          move="worker" not in outcome.meta)
        lease.add([manifest.cid, *(o.cid for o in manifest.outputs)])
        syncpoints.point("after_ingest")
    except BaseException as exc:
        # An adapter that failed after something billable ran says what ran (adapters.base.billed).
        billed = outcome if outcome is not None else billed_outcome(exc)
        cost = run.charging.settle_after_failure(spec, prep.inputs, adapter, billed, result)
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


_VALIDATORS: dict[int, tuple[Any, Any]] = {}     # id(schema) -> (the schema, kept alive; its validator)
_VALIDATORS_MAX = 64


def _validator(schema: Any) -> Any:
    """The Draft 2020-12 validator of ``schema``, built once per schema object (a batch's misses
    share their spec's; building one costs as much as validating small inputs)."""
    found = _VALIDATORS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    if len(_VALIDATORS) >= _VALIDATORS_MAX:
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


def validate(spec: ProcessorSpec, inputs: Any) -> None:
    """Inputs against the spec's JSON Schema; the first violation, by its JSON pointer."""
    validator = _validator(spec.inputs_schema)
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


def materialise(run: RunState, ws: Workspace, prep: Prepared, *, in_process: bool = False) -> None:
    """The workspace: only the attachments the action references, hard-linked from the CAS
    (read-only) and hashed there (a corrupt blob is quarantined: ERR_CORRUPT_BLOB), and the
    rewritten inputs. For an ``in_process`` adapter (the mock: it takes the inputs as a value and
    hands its result back with its outcome) only the root, ``outputs/`` and the attachments:
    each directory costs a create and a remove on the run's critical path."""
    from cas import CorruptBlob
    from theoryx.store.handle import store_error

    try:
        os.mkdir(ws.root, 0o777)   # a fresh execution id: the workspace never exists already
    except FileNotFoundError:  # no work-v1/ yet
        ws.root.mkdir(parents=True, exist_ok=True)
    os.mkdir(ws.outputs, 0o777)
    if not in_process:
        os.mkdir(ws.result_dir, 0o777)
    if prep.attachments or not in_process:
        os.mkdir(ws.inputs, 0o777)
    for att in prep.attachments:
        dest = ws.inputs / att.cid / att.filename
        dest.parent.mkdir(exist_ok=True)
        try:
            run.leased(att.cid, partial(run.stores.cas.link_to, att.cid, dest, verify=True))
        except CorruptBlob as exc:
            raise store_error(exc, f"attachment {att.filename} ({att.cid})") from None
    if not in_process:
        ws.inputs_json.write_text(json.dumps(prep.inputs, sort_keys=True))


def _result(outcome: Outcome, ws: Workspace) -> dict[str, Any]:
    """The processor's result: handed back with the outcome by an in-process adapter (as the bytes
    a result file would hold), else read from the workspace (:func:`read_result`)."""
    return read_result(ws) if outcome.result is None else parse_result(outcome.result)


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
        data = os.read(fd, RESULT_LIMIT)
    finally:
        os.close(fd)
    return parse_result(data)


USAGE_LIMIT = 64 << 10
"""The most bytes of ``usage`` an execution record keeps (packed)."""
USAGE_DEPTH = 16
"""The deepest nesting of ``usage`` a record keeps (token counts are one or two levels deep)."""


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar: 0), without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, d + 1) for x in v)
        if deepest > USAGE_DEPTH:
            break
    return deepest


def usage_of(result: dict[str, Any]) -> dict[str, Any]:
    """The result's ``usage`` as the record and the cache entry keep it: a JSON object that packs
    within :data:`USAGE_LIMIT` bytes. Anything else (a list, an integer beyond 64 bits, nesting
    too deep to pack) is kept as ``{}``: the processor reported it, the budget judges it
    (``theoryx.budget.costs`` refuses counts that are not sane), and it never fails the record.
    Nested deeper than :data:`USAGE_DEPTH`, it is kept as ``{}`` too."""
    usage = result.get("usage")
    if not isinstance(usage, dict) or not usage or _depth(usage) > USAGE_DEPTH:
        return {}
    try:
        packed = pack(usage)
    except (OverflowError, ValueError, TypeError):
        return {}
    return usage if len(packed) <= USAGE_LIMIT else {}


def parse_result(data: bytes) -> dict[str, Any]:
    """A result file's content: a JSON object within :data:`RESULT_LIMIT` bytes, else ``{}``."""
    try:
        value = json.loads(data[:RESULT_LIMIT])
    except (ValueError, RecursionError):        # not JSON, or nested too deep for the parser
        return {}
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
