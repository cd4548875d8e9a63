"""One ``theoryx run``: resolve, key, look up, and on a miss execute, ingest and cache.

The flow is DESIGN.md's "The way a run flows". The hit path (resolve via the spec cache, hash
attachments, build the action, validated lookup, record) never parses YAML, validates schemas or
imports docker, modal, litellm or rich.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cas import BlobNotFound
from theoryx import adapters
from theoryx.budget.charging import Charging
from theoryx.core import syncpoints
from theoryx.core.canonical import CanonicalizationError
from theoryx.core.ids import new_execution_id
from theoryx.errors import (
    ExecutionTimeout,
    InputsError,
    OutOfMemory,
    ProcessorFailed,
    SecretsMissing,
    StoreError,
    TheoryxError,
)
from theoryx.pipeline import attachments, writeprefix
from theoryx.pipeline.action import Action, build
from theoryx.provenance import receipts
from theoryx.spec.context import ContextManifest, env_identity, image_identity
from theoryx.spec.model import ProcessorSpec
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry
from theoryx.store import action_cache, executions
from theoryx.store.action_cache import ActionResult, OutputEntry
from theoryx.store.executions import ExecutionRecord
from theoryx.store.handle import Stores
from theoryx.store.leases import Lease

if TYPE_CHECKING:
    from theoryx.adapters.base import Outcome, Workspace

StreamFn = Callable[[str, bytes], None]
T = TypeVar("T")


@dataclass(frozen=True)
class RunRequest:
    """Everything ``theoryx run`` was asked. ``attachments`` maps names to host paths."""

    ref: str
    inputs: Any = field(default_factory=dict)
    attachments: Mapping[str, Path] = field(default_factory=dict)
    adapter: str = "local"
    plan: str | None = None
    write_prefix: str = writeprefix.DEFAULT
    seed: int = 0
    salt: str = ""
    no_cache: bool = False
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    registry: str | None = None
    stream: StreamFn | None = None
    build: bool = False


@dataclass(frozen=True)
class Prepared:
    """Steps 1-4 done: the spec, the action, the referenced attachments, rewritten inputs and
    the image context manifest. ``audit`` builds one from a stored action to re-execute it."""

    spec: ProcessorSpec
    action: Action
    attachments: tuple[attachments.Attachment, ...]
    inputs: Any
    context: ContextManifest

    @property
    def write_prefix(self) -> str:
        return str(self.action.body["write_prefix"])

    @property
    def input_cids(self) -> tuple[str, ...]:
        return tuple(sorted({a.cid for a in self.attachments}))


@dataclass(frozen=True)
class RunResult:
    """A successful run. ``cache`` is "hit" or "miss"."""

    execution_id: str
    ref: str
    adapter: str
    cache: str
    memo_key: str
    outputs: tuple[OutputEntry, ...]
    env_fingerprint: str
    duration_ms: int
    record: ExecutionRecord

    @property
    def index_path(self) -> str:
        return receipts.index_path(self.execution_id)

    @property
    def receipt_path(self) -> str:
        return receipts.receipt_path(self.execution_id)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {
            "status": "success",
            "execution_id": self.execution_id,
            "ref": self.ref,
            "adapter": self.adapter,
            "cache": self.cache,
            "memo_key": self.memo_key,
            "outputs": [o.to_dict() for o in self.outputs],
            "index_path": self.index_path,
            "receipt_path": self.receipt_path,
            "meta": {"env_fingerprint": self.env_fingerprint, "duration_ms": self.duration_ms},
            "plan": self.record.plan, "cost_micros": self.record.cost_micros,
            "saved_micros": self.record.saved_micros,
        }


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Run:
    """State of one run; methods are the steps of the flow."""

    def __init__(self, stores: Stores, req: RunRequest) -> None:
        self.stores = stores
        self.req = req
        self.execution_id = new_execution_id()
        self.started_ms = _now_ms()
        self.t0 = time.monotonic()
        self.lease: Lease | None = None
        self.record_paths = True
        self.outcome: Outcome | None = None       # set once the adapter has run
        self.result: dict[str, Any] = {}          # the processor's THEORYX_RESULT
        self.charging = Charging(stores, req.plan, self.execution_id, req.adapter_options)
        self.record = ExecutionRecord(
            execution_id=self.execution_id, ref=req.ref, adapter=req.adapter, status="error",
            plan=req.plan, seed=req.seed, started_ms=self.started_ms,
        )

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def prepare(self, lease: Lease) -> Prepared:
        """Steps 1-4: spec, attachments, rewritten inputs, action."""
        req, stores = self.req, self.stores
        env_class = adapters.env_class(req.adapter)
        prefix = writeprefix.expand(req.write_prefix, self.execution_id)
        spec = Registry.from_option(req.registry).load(Ref.parse(req.ref), stores.db)
        stored = attachments.store(dict(req.attachments), stores.cas, protect=lambda c: lease.add([c]))
        used: set[str] = set()
        inputs = attachments.rewrite(req.inputs, stored, used)
        for name in sorted(set(stored) - used):
            print(f"Warning: attachment {name!r} is not referenced by the inputs "
                  f'(use {{"$attach": "{name}"}}); it is not passed to the processor',
                  file=sys.stderr)
        image, manifest = image_identity(spec, env_class)
        try:
            action = build(spec, image=image, env=env_identity(env_class), inputs=inputs,
                           write_prefix=prefix, seed=req.seed, salt=req.salt)
        except CanonicalizationError as exc:
            raise InputsError(f"inputs have no canonical JSON form (RFC 8785): {exc}") from None
        return Prepared(spec, action, tuple(stored[n] for n in sorted(used)), inputs, manifest)

    def adopt(self, prep: Prepared) -> None:
        """Name the prepared action on the record."""
        self.record = self.record.with_(
            memo_key=prep.action.memo_key, spec_digest=prep.action.spec_digest,
            write_prefix=prep.write_prefix, env_fingerprint=receipts.env_fingerprint(prep.action.body),
            input_cids=prep.input_cids,
        )

    def finish(self, rec: ExecutionRecord, cache_entry: ActionResult | None = None) -> RunResult:
        rec = receipts.write(rec.with_(status="success", duration_ms=self.elapsed_ms()), self.stores.cas)
        if self.lease is not None:
            self.lease.add(c for c in (rec.index_cid, rec.receipt_cid) if c)
        syncpoints.point("before_record")
        executions.record(self.stores.db, rec, cache_entry=cache_entry, paths=self.record_paths)
        self.record = rec
        return RunResult(rec.execution_id, rec.ref, rec.adapter, rec.cache or "miss",
                         rec.memo_key or "", rec.outputs, rec.env_fingerprint or "",
                         rec.duration_ms, rec)

    def hit(self, result: ActionResult) -> RunResult:
        """Step 5, a validated hit: cost 0, saved = the producer's cost."""
        if self.req.stream is not None and result.stdout_cid:
            cid = result.stdout_cid
            self.req.stream("stdout", _leased(self.stores, cid, lambda: self.stores.cas.read(cid)))
        rec = self.record.with_(
            cache="hit", action_cid=result.action_cid, outputs=result.outputs,
            manifest_cid=result.manifest_cid, stdout_cid=result.stdout_cid,
            stderr_cid=result.stderr_cid, exit_code=result.exit_code, usage=result.usage,
            saved_micros=result.cost_micros, source_execution=result.execution_id,
        )
        self.charging.hit(result.cost_micros, result.execution_id)
        touched = result.used_at(_now_ms())
        return self.finish(rec, cache_entry=touched)

    def miss(self, prep: Prepared, lease: Lease, *, cache_write: bool) -> RunResult:
        """Steps 6-12. With ``cache_write`` False (audits) the cache entry is left alone."""
        from theoryx.adapters.base import ExecRequest, Workspace
        from theoryx.pipeline.ingest import ingest
        from theoryx.pipeline.logs import store_log

        stores, req = self.stores, self.req
        spec, action, stored, inputs = prep.spec, prep.action, prep.attachments, prep.inputs
        self.validate(spec, inputs)
        adapter = adapters.get(req.adapter, stores=stores, build=req.build)
        secrets = self.secrets(spec)
        lease.add([action.memo_key, prep.context.cid])  # leased before they are written: gc roots
        action_blob = stores.cas.put_bytes(action.data)
        stores.cas.put_bytes(prep.context.data)
        self.record = self.record.with_(cache="miss", action_cid=action_blob.cid)
        self.charging.admit(spec, inputs, adapter, lease.path.absolute())
        ws = Workspace(stores.home.work / self.execution_id)
        try:
            self.materialise(ws, stored, inputs)
            syncpoints.point("before_execute")
            outcome = self.outcome = adapter.execute(ExecRequest(
                spec=spec, action=action.body, inputs=inputs, workspace=ws,
                execution_id=self.execution_id, write_prefix=self.record.write_prefix or "",
                seed=req.seed, secrets=secrets, options=dict(req.adapter_options), stream=req.stream,
            ))
            stdout = store_log(ws.stdout, stores.cas, secrets.values())
            stderr = store_log(ws.stderr, stores.cas, secrets.values())
            lease.add(c for c in (stdout, stderr) if c)
            self.record = self.record.with_(stdout_cid=stdout, stderr_cid=stderr, exit_code=outcome.exit_code)
            result = self.result = self.read_result(ws)
            self.record = self.record.with_(usage=result.get("usage") or {})
            self.check(outcome, ws, spec)
            manifest = ingest(ws.outputs, spec, self.record.write_prefix or "", stores.cas)
            lease.add([manifest.cid, *(o.cid for o in manifest.outputs)])
            syncpoints.point("after_ingest")
        except BaseException:
            cost = self.charging.settle_after_failure(spec, inputs, adapter, self.outcome, self.result)
            if cost is not None:
                self.record = self.record.with_(cost_micros=cost)
            raise
        finally:
            _remove_tree(ws.root)
        cost = self.charging.settle(spec, inputs, adapter, outcome, result, status="success")
        self.record = self.record.with_(cost_micros=cost)
        rec = self.record.with_(outputs=manifest.outputs, manifest_cid=manifest.cid)
        now = _now_ms()
        ac = ActionResult(
            memo_key=action.memo_key, action_cid=action_blob.cid, manifest_cid=manifest.cid,
            outputs=manifest.outputs, exit_code=outcome.exit_code, stdout_cid=rec.stdout_cid,
            stderr_cid=rec.stderr_cid, usage=rec.usage, cost_micros=rec.cost_micros,
            duration_ms=outcome.duration_ms, execution_id=self.execution_id, adapter=req.adapter,
            created_ms=now, last_used_ms=now, input_cids=rec.input_cids,
        )
        return self.finish(rec, cache_entry=ac if cache_write else None)

    def validate(self, spec: ProcessorSpec, inputs: Any) -> None:
        """Step 6: inputs against the spec's JSON Schema; the first violation's JSON pointer."""
        import jsonschema

        validator = jsonschema.Draft202012Validator(spec.inputs_schema)
        errors = sorted(validator.iter_errors(inputs), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            pointer = "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in err.absolute_path)
            raise InputsError(f"inputs invalid for {spec.ref} at '{pointer or '/'}': {err.message}")

    def secrets(self, spec: ProcessorSpec) -> dict[str, str]:
        """The spec's secrets from the environment; the mock adapter needs none."""
        if self.req.adapter == "mock":
            return {}
        missing = [n for n in spec.secrets if not os.environ.get(n)]
        if missing:
            raise SecretsMissing(f"Required secret(s) missing: {', '.join(missing)}")
        return {n: os.environ[n] for n in spec.secrets}

    def materialise(self, ws: Workspace, stored: tuple[attachments.Attachment, ...], inputs: Any) -> None:
        """Only the attachments the action references, hard-linked from the CAS, read-only."""
        for d in (ws.root, ws.inputs, ws.outputs, ws.result_dir):
            d.mkdir(parents=True, exist_ok=True)
        for att in stored:
            dest = ws.inputs / att.cid / att.filename
            dest.parent.mkdir(exist_ok=True)
            _leased(self.stores, att.cid, partial(self.stores.cas.link_to, att.cid, dest))
        ws.inputs_json.write_text(json.dumps(inputs, sort_keys=True))

    def read_result(self, ws: Workspace) -> dict[str, Any]:
        """The processor's optional ``THEORYX_RESULT``: a regular file of at most 1 MiB of JSON.
        Opened without following links (the container controls that directory, and a link
        could point at a host file); anything else is ignored."""
        try:
            fd = os.open(ws.result, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return {}
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {}
            value = json.loads(os.read(fd, 1 << 20))
        except ValueError:
            return {}
        finally:
            os.close(fd)
        return value if isinstance(value, dict) else {}

    def check(self, outcome: Outcome, ws: Workspace, spec: ProcessorSpec) -> None:
        if outcome.ok:
            return
        from theoryx.pipeline.logs import tail

        err_tail = tail(self.stores.cas.read(self.record.stderr_cid)) if self.record.stderr_cid else ""
        suffix = f"\n--- stderr (last lines) ---\n{err_tail}" if err_tail else ""
        if outcome.timed_out:
            limit = outcome.meta.get("timeout_s", spec.runtime.timeout)
            raise ExecutionTimeout(f"processor {spec.ref} timed out after {limit}s and was killed{suffix}")
        if outcome.oom_killed:
            raise OutOfMemory(
                f"processor {spec.ref} was killed for exceeding its memory limit "
                f"({spec.runtime.memory} MiB){suffix}"
            )
        raise ProcessorFailed(f"processor {spec.ref} failed with exit code {outcome.exit_code}{suffix}")


def _leased(stores: Stores, cid: str, use: Callable[[], T]) -> T:
    """Run ``use`` on a blob this run has leased. If a concurrent gc withdrew it between its
    last lease read and its rename, put it back now — gc's own recovery would, because the lease
    names it — and try once more."""
    try:
        return use()
    except BlobNotFound:
        if not stores.cas.reinstate(cid):
            raise StoreError(f"blob {cid} vanished from the store during the run (see `theoryx verify`)") from None
        return use()


def _remove_tree(path: Path) -> None:
    """Remove a workspace, including read-only files and directories left by a container."""
    if not path.exists():
        return

    def onerror(func: Callable[..., Any], p: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p):
            os.chmod(p, 0o700)
        func(p)

    import shutil

    shutil.rmtree(path, onerror=onerror)


class NotAHit(Exception):
    """Raised by ``execute(..., hit_only=True)`` when the cache cannot answer; nothing was written."""


def execute(stores: Stores, req: RunRequest, *, prepared: Prepared | None = None,
            cache_write: bool = True, hit_only: bool = False) -> RunResult:
    """Run ``req``; raise a :class:`TheoryxError` (with ``execution_id`` set) on failure.
    Every invocation leaves an execution record, successful or not.

    ``prepared`` replays a stored action (audits): the lookup is skipped, world paths keep
    pointing at the executions they named, and with ``cache_write=False`` the result does not
    replace the cache entry. ``hit_only`` answers from the cache or raises :class:`NotAHit`
    (also instead of any error), recording nothing: the CLI's fast path, which falls back to a
    full run.
    """
    run = _Run(stores, req)
    run.record_paths = prepared is None
    try:
        with Lease(stores.home.leases, run.execution_id) as lease:
            run.lease = lease
            if req.plan is not None:
                from theoryx.budget.plans import check_key

                check_key(req.plan)
            prep = prepared if prepared is not None else run.prepare(lease)
            run.adopt(prep)
            lease.add(prep.input_cids)
            syncpoints.point("after_prepare")
            if not req.no_cache and prepared is None:
                entry = action_cache.get(stores.db, prep.action.memo_key)
                if entry is not None:
                    lease.add(entry.blobs())  # before the existence check: gc honours leases
                    result = action_cache.lookup(stores.db, stores.cas, prep.action.memo_key)
                    syncpoints.point("after_lookup")
                    if result is not None:
                        return run.hit(result)
            if hit_only:
                raise NotAHit(prep.action.memo_key)
            return run.miss(prep, lease, cache_write=cache_write)
    except TheoryxError as exc:
        if hit_only:
            raise NotAHit(exc.code) from exc
        exc.execution_id = run.execution_id
        _record_failure(stores, run, exc)
        raise
    except KeyboardInterrupt:
        _record_failure(stores, run, TheoryxError("interrupted"))
        raise


def _record_failure(stores: Stores, run: _Run, exc: TheoryxError) -> None:
    rec = run.record.with_(status="error", error=exc.to_dict(), duration_ms=run.elapsed_ms())
    try:
        executions.record(stores.db, rec)
    except Exception:  # recording must never mask the original error
        pass
