"""``theoryx audit``: re-execute a recorded action, bypassing the cache, and compare outputs.

The recorded action pre-image is read from the CAS and rebuilt against the *current* spec and image
context for the target adapter's environment class. If that gives a different memo key, the
processor (or the environment) is not the one that ran: the audit stops and names what changed,
unless ``current`` asks to re-execute the current action anyway. Otherwise the recorded action runs
again through :meth:`theoryx.pipeline.session.Session.replay` (the cache entry stays) and its
outputs are compared path by path with the recorded ones. Every audit leaves an
:class:`~theoryx.provenance.audit_records.AuditRecord`; an audit never changes what a world path resolves to.

``mock`` and container (``local``, ``modal``) environment classes have different image
identities, so auditing a mock execution on ``local`` is a different action: it needs ``current``.
"""

from __future__ import annotations

import difflib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cas import CasError, Store
from theoryx import adapters
from theoryx.core.canonical import digest
from theoryx.core.ids import new_execution_id
from theoryx.errors import AuditError, ExecutionError, TheoryxError
from theoryx.pipeline.action import Action, build
from theoryx.pipeline.attachments import INPUTS_ROOT, Attachment, guess_mime, referenced_artifacts
from theoryx.pipeline.prepare import Prepared
from theoryx.pipeline.request import RunRequest
from theoryx.pipeline.result import RunResult
from theoryx.pipeline.session import Session
from theoryx.provenance import audit_records as audits
from theoryx.provenance.audit_records import AuditRecord, OutputDiff
from theoryx.provenance.explain import diff_actions, store_manifests
from theoryx.spec.context import ContextManifest, env_identity, image_identity
from theoryx.spec.model import ProcessorSpec
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry
from theoryx.store import action_cache, executions
from theoryx.store.action_cache import ActionResult, OutputEntry
from theoryx.store.handle import Stores

TEXT_LIMIT = 64 << 10       # outputs up to this size get a unified diff when they are text
DIFF_LINES = 40


@dataclass(frozen=True)
class Options:
    """How to audit: ``adapter`` (default: the recorded one), ``current`` (audit against the
    current spec when the key changed), the registry, a plan to charge, rebuild the image."""

    adapter: str | None = None
    current: bool = False
    registry: str | None = None
    plan: str | None = None
    build: bool = False


@dataclass(frozen=True)
class Target:
    """What is audited: a successful execution, or an action cache entry's producer."""

    execution_id: str
    adapter: str
    memo_key: str
    action_cid: str
    outputs: tuple[OutputEntry, ...]
    ref: str = ""

    @classmethod
    def of_result(cls, result: ActionResult, ref: str = "") -> Target:
        return cls(result.execution_id, result.adapter, result.memo_key, result.action_cid, result.outputs, ref)


def load_action(cas: Store, action_cid: str, memo_key: str) -> Action:
    """The stored pre-image; :class:`AuditError` if absent, not canonical or not ``memo_key``."""
    try:
        data = cas.read(action_cid)
        action = Action.from_body(json.loads(data))
    except CasError as exc:
        raise AuditError(f"the action pre-image {action_cid} cannot be read: {exc}") from None
    except ValueError as exc:
        raise AuditError(f"the action pre-image {action_cid} is not canonical JSON: {exc}") from None
    if action.data != data or digest(data) != memo_key:
        raise AuditError(f"the stored action {action_cid} does not recompute to memo key {memo_key}")
    return action


def rebuild(recorded: Action, spec: ProcessorSpec, env_class: str) -> tuple[Action, ContextManifest]:
    """The recorded action's inputs, write prefix, seed and salt with today's spec and image."""
    image, manifest = image_identity(spec, env_class)
    b = recorded.body
    action = build(spec, image=image, env=env_identity(env_class), inputs=b["inputs"],
                   write_prefix=b["write_prefix"], seed=b["seed"], salt=b["salt"])
    return action, manifest


def attachments_of(inputs: Any, cas: Store) -> tuple[Attachment, ...]:
    """The attachments the inputs reference, checked to be in the store."""
    found: dict[tuple[str, str], Attachment] = {}
    for art in referenced_artifacts(inputs):
        cid, world = str(art["cid"]), str(art["$artifact"])
        name = world.rsplit("/", 1)[-1]
        if world != f"{INPUTS_ROOT}{cid}/{name}" or name in ("", ".", ".."):
            raise AuditError(f"the recorded inputs name a malformed attachment path {world!r}")
        blob = cas.stat(cid)
        if blob is None:
            raise AuditError(f"attachment {name} ({cid}) is no longer in the store: the inputs cannot be replayed")
        found[(cid, name)] = Attachment(name, name, cid, blob.size, str(art.get("mime") or guess_mime(name)))
    return tuple(found.values())


def _entry(o: OutputEntry | None) -> dict[str, Any] | None:
    return None if o is None else {"cid": o.cid, "size_bytes": o.size, "mime": o.mime}


def _text(cas: Store, o: OutputEntry) -> list[str] | None:
    if o.size > TEXT_LIMIT:
        return None
    try:
        data = cas.read(o.cid)
        return None if b"\0" in data else data.decode("utf-8").splitlines()
    except (CasError, UnicodeDecodeError):
        return None


def text_diff(cas: Store, old: OutputEntry, new: OutputEntry) -> str | None:
    """A unified diff of two small text outputs (at most :data:`DIFF_LINES` lines), else None."""
    a, b = _text(cas, old), _text(cas, new)
    if a is None or b is None:
        return None
    lines = list(difflib.unified_diff(a, b, f"recorded{old.path}", f"replayed{new.path}", n=2, lineterm=""))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more lines)"]
    return "\n".join(lines)


def compare(cas: Store, recorded: Sequence[OutputEntry], replayed: Sequence[OutputEntry]) -> list[OutputDiff]:
    """Every path whose cid differs, that the replay did not produce, or that it added."""
    old, new = {o.path: o for o in recorded}, {o.path: o for o in replayed}
    out = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a is not None and b is not None and a.cid == b.cid:
            continue
        status = "missing" if b is None else "extra" if a is None else "differs"
        diff = text_diff(cas, a, b) if a is not None and b is not None else None
        out.append(OutputDiff(path, status, _entry(a), _entry(b), diff))
    return out


class _Audit:
    """One audit; ``info`` accumulates the record's fields as the steps learn them."""

    def __init__(self, stores: Stores, target: Target, opts: Options) -> None:
        self.stores, self.target, self.opts = stores, target, opts
        self.info: dict[str, Any] = {
            "audit_id": new_execution_id(), "execution_id": target.execution_id, "ref": target.ref,
            "adapter": opts.adapter or target.adapter, "recorded_adapter": target.adapter,
            "memo_key": target.memo_key, "created_ms": int(time.time() * 1000), "current": opts.current,
        }

    def record(self, verdict: str, **fields: Any) -> AuditRecord:
        self.info.update(fields, verdict=verdict)
        return AuditRecord(**self.info)

    def run(self) -> AuditRecord:
        try:
            return self.steps()
        except ExecutionError as exc:
            return self.record("diverged", replay_execution=exc.execution_id,
                               reason=f"the re-execution failed ({exc.code}): {exc.message}")
        except TheoryxError as exc:
            reason = exc.message if isinstance(exc, AuditError) else f"{exc.code}: {exc.message}"
            return self.record("unauditable", reason=reason, replay_execution=exc.execution_id)
        except CasError as exc:
            return self.record("unauditable", reason=f"{exc.code}: {exc}")

    def steps(self) -> AuditRecord:
        stores, target, opts = self.stores, self.target, self.opts
        recorded = load_action(stores.cas, target.action_cid, target.memo_key)
        self.info["ref"] = recorded.body["ref"]
        spec = Registry.from_option(opts.registry).load(Ref.parse(recorded.body["ref"]), stores.db)
        # judged as the execution was recorded (its action names the flag), not as the spec says now
        self.info["stochastic"] = bool(recorded.body.get("spec", {}).get("stochastic"))
        env_class = adapters.env_class(self.info["adapter"])
        now, manifest = rebuild(recorded, spec, env_class)
        if now.memo_key != recorded.memo_key:
            changes = diff_actions(recorded.body, now.body, store_manifests(stores, {manifest.cid: manifest.files}))
            self.info["changes"] = tuple(c.to_dict() for c in changes)
            if not opts.current:
                raise AuditError(self.changed(recorded.body, env_class, now.memo_key, [c.describe() for c in changes]))
        self.info["audited_memo_key"] = now.memo_key
        body = recorded.body
        prep = Prepared(spec, now, attachments_of(body["inputs"], stores.cas), body["inputs"], manifest)
        replay = self.replay(prep)
        diffs = compare(stores.cas, target.outputs, replay.outputs)
        verdict = "stochastic" if self.info["stochastic"] else "diverged" if diffs else "reproducible"
        return self.record(verdict, replay_execution=replay.execution_id, differences=tuple(diffs),
                           outputs_compared=len({o.path for o in (*target.outputs, *replay.outputs)}))

    def changed(self, body: dict[str, Any], env_class: str, new_key: str, lines: list[str]) -> str:
        recorded_class = body.get("env", {}).get("class")
        keys = f"memo key {self.target.memo_key} -> {new_key}"
        if recorded_class != env_class:
            return (f"execution {self.target.execution_id} ran in the {recorded_class} environment class "
                    f"(adapter {self.target.adapter}); adapter {self.info['adapter']} runs the {env_class} "
                    f"class, whose image identity differs: that is a different action ({keys}). Audit on "
                    f"the recorded adapter, or pass --current to re-execute the {env_class} action and "
                    f"compare its outputs with the recorded ones")
        shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
        return (f"the processor changed since execution {self.target.execution_id} ({keys}): {shown}. "
                f"Pass --current to audit against the current spec")

    def replay(self, prep: Prepared) -> RunResult:
        body = prep.action.body
        req = RunRequest(ref=str(prep.spec.ref), inputs=prep.inputs, adapter=self.info["adapter"],
                         plan=self.opts.plan, write_prefix=prep.write_prefix, seed=body["seed"],
                         salt=body["salt"], registry=self.opts.registry, build=self.opts.build)
        return Session(stores=self.stores).replay(req, prep)


def audit_target(stores: Stores, target: Target, opts: Options = Options()) -> AuditRecord:
    """Audit ``target`` and store the record (whatever the verdict)."""
    rec = _Audit(stores, target, opts).run()
    audits.save(stores.db, rec)
    return rec


def audit(stores: Stores, execution: str, opts: Options = Options()) -> AuditRecord:
    """Audit one execution (id or unique prefix). :class:`NotFound` for an unknown one and
    :class:`AuditError` for one that did not succeed (neither leaves a record)."""
    rec = executions.get(stores.db, execution)
    if rec.status != "success" or not rec.action_cid or not rec.memo_key:
        raise AuditError(f"execution {rec.execution_id} did not succeed: there is no result to reproduce")
    target = Target(rec.execution_id, rec.adapter, rec.memo_key, rec.action_cid, rec.outputs, rec.ref)
    return audit_target(stores, target, opts)


def _ref_of(stores: Stores, result: ActionResult) -> str:
    rec = executions.find(stores.db, result.execution_id)
    if rec is not None:
        return rec.ref
    try:
        return str(json.loads(stores.cas.read(result.action_cid))["ref"])
    except (CasError, ValueError, KeyError, TypeError):
        return ""


def sample(stores: Stores, n: int, *, ref: str | None = None, opts: Options = Options(),
           rng: random.Random | None = None) -> list[AuditRecord]:
    """Audit ``n`` action cache entries chosen at random (of ``ref`` only, when given)."""
    entries = [(e, _ref_of(stores, e)) for e in action_cache.entries(stores.db)]
    if ref is not None:
        entries = [(e, r) for e, r in entries if r == ref]
    chosen = (rng or random.SystemRandom()).sample(entries, min(n, len(entries)))
    chosen.sort(key=lambda er: er[0].execution_id)
    return [audit_target(stores, Target.of_result(e, r), opts) for e, r in chosen]
