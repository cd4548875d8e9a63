"""Portable receipts: export one (theoryx or in-toto format, optionally DSSE-signed) and verify one.

Formats and payload types:

- ``theoryx``: the stored ``determinism.json`` bytes, payload type :data:`THEORYX_PAYLOAD_TYPE`;
- ``in-toto``: :func:`theoryx.provenance.intoto.statement`, payload type ``application/vnd.in-toto+json``;
  signed as its RFC 8785 bytes, printed unsigned as indented JSON.

Verification runs every check and reports each (``ok``, ``failed`` or ``skipped``):
``signature`` (a signed receipt needs a key: ``--key``, else the default key's ``.pub``; an
unsigned one given ``--key`` fails), ``format``, one ``blob`` check per theoryx digest (present,
rehashes to its cid, matching size and sha256), ``memo key`` (the stored action pre-image is
canonical, hashes to the memo key and its spec digest recomputes), ``parameters`` (what the
receipt claims ran is what the pre-image says), ``outputs`` (the outputs are the receipt's
manifest's, and this store's record of the execution or its action cache entry for the memo key
binds that manifest to the memo key; skipped when instead a verified signature vouches for it,
failed otherwise) and ``record`` (the receipt matches what this store recorded for the
execution; skipped when the store has no such execution).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cas import BlobNotFound, CasError, cid_of_bytes, is_cid
from theoryx.core import strictjson
from theoryx.core.canonical import canonical_bytes, canonical_digest, digest
from theoryx.core.jsondiff import deltas, pointer
from theoryx.errors import NotFound, ReceiptError, SignatureInvalid, SigningKeyError, StoreError, UsageError
from theoryx.pipeline.action import Action
from theoryx.provenance import dsse, intoto, keys
from theoryx.store import executions, receipts
from theoryx.store.executions import ExecutionRecord
from theoryx.store.handle import Stores, store_error

FORMATS = ("theoryx", "in-toto")
THEORYX_PAYLOAD_TYPE = "application/vnd.theoryx.receipt+json"
PAYLOAD_TYPES = {"theoryx": THEORYX_PAYLOAD_TYPE, "in-toto": intoto.PAYLOAD_TYPE}
_UNCOMPARED = (("predicate", "runDetails", "builder", "version"), ("theoryx_version",))


def _pretty(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def _record(stores: Stores, execution: str) -> ExecutionRecord:
    rec = executions.get(stores.db, execution)
    if rec.status != "success" or not (rec.receipt_cid or receipts.derived(rec)):
        raise UsageError(f"execution {rec.execution_id} did not succeed: it has no receipt")
    return rec


def export(stores: Stores, execution: str, fmt: str = "theoryx", sign_with: Path | None = None) -> bytes:
    """The receipt of ``execution`` in ``fmt``; a DSSE envelope when ``sign_with`` names a key."""
    rec = _record(stores, execution)
    if fmt == "theoryx":
        try:
            payload = stores.cas.read(rec.receipt_cid) if rec.receipt_cid else receipts.receipt_bytes(rec)
        except BlobNotFound:
            raise NotFound(f"the receipt {rec.receipt_cid} of execution {rec.execution_id} is no longer in the "
                           "store (removed by gc)") from None
        except CasError as exc:
            raise store_error(exc, f"the receipt {rec.receipt_cid} of execution {rec.execution_id}") from None
        unsigned = payload
    elif fmt == "in-toto":
        stmt = intoto.statement(stores, rec)
        payload, unsigned = canonical_bytes(stmt), _pretty(stmt)
    else:
        raise UsageError(f"unknown receipt format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if sign_with is None:
        return unsigned
    envelope = dsse.sign(payload, PAYLOAD_TYPES[fmt], keys.load_private(sign_with))
    return _pretty(envelope.to_json())


@dataclass(frozen=True)
class Check:
    name: str
    status: str      # "ok" | "failed" | "skipped"
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Verification:
    """The outcome of verifying one receipt file."""

    kind: str = "unknown"
    signed: bool = False
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return any(c.status == "ok" for c in self.checks) and not any(c.status == "failed" for c in self.checks)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "kind": self.kind, "signed": self.signed, "checks": [c.to_dict() for c in self.checks]}

    def lines(self) -> list[str]:
        out = [f"{c.status.upper() if c.status == 'failed' else c.status:<8} {c.name}: {c.detail}" for c in self.checks]
        failed = sum(c.status == "failed" for c in self.checks)
        out.append("verified" if self.ok else f"verification FAILED ({failed} problem(s))")
        return out


class _Verifier:
    def __init__(self, stores: Stores, key: Path | None) -> None:
        self.stores, self.key, self.v = stores, key, Verification()

    def run(self, data: bytes) -> Verification:
        try:
            doc = strictjson.loads(data)
        except (ValueError, RecursionError) as exc:
            self.v.add("format", "failed", f"not I-JSON: {exc}" if isinstance(exc, ValueError) else "nested too deeply")
            return self.v
        try:
            payload, doc = self.unwrap(doc, data)
            self.check(doc, payload)
        except ReceiptError as exc:
            self.v.add("format", "failed", exc.message)
        except (AttributeError, TypeError, KeyError, RecursionError) as exc:
            self.v.add("format", "failed", f"malformed receipt ({type(exc).__name__}: {exc})")
        return self.v

    def unwrap(self, doc: Any, data: bytes) -> tuple[bytes, Any]:
        """The payload bytes and document, checking the signature of an envelope."""
        if not (isinstance(doc, dict) and "payloadType" in doc and "signatures" in doc):
            if self.key is not None:
                self.v.add("signature", "failed",
                           f"the receipt is not signed (no DSSE envelope) but --key {self.key} was given")
            else:
                self.v.add("signature", "skipped", "the receipt is not signed")
            return data, doc
        envelope = dsse.Envelope.from_json(doc)
        self.v.signed = True
        self.signature(envelope)
        if envelope.payload_type not in PAYLOAD_TYPES.values():
            raise ReceiptError(f"unsupported payloadType {envelope.payload_type!r}")
        try:
            return envelope.payload, strictjson.loads(envelope.payload)
        except strictjson.DuplicateKey as exc:
            raise ReceiptError(f"the signed payload is not I-JSON: {exc}") from None
        except (ValueError, RecursionError):
            raise ReceiptError("the signed payload is not JSON") from None

    def signature(self, envelope: dsse.Envelope) -> None:
        path = self.key
        if path is None:
            try:
                default: Path | None = keys.public_path(keys.default_path())
            except UsageError:      # no home directory for the default key: there is none
                default = None
            if default is not None and default.is_file():
                path = default
        if path is None:
            self.v.add("signature", "failed", "the receipt is signed but there is no key to check it with: "
                                              "give --key PUB")
            return
        try:
            public = keys.load_public(path)
            dsse.verify(envelope, public)
            self.v.add("signature", "ok", f"ed25519, key {keys.keyid(public)[:16]}… ({path})")
        except (SignatureInvalid, SigningKeyError) as exc:
            self.v.add("signature", "failed", exc.message)

    def check(self, doc: Any, payload: bytes) -> None:
        if isinstance(doc, dict) and doc.get("_type") == intoto.STATEMENT_TYPE:
            self.v.kind = "in-toto"
            self.intoto(doc)
        elif isinstance(doc, dict) and "memo_key" in doc and "execution_id" in doc:
            self.v.kind = "theoryx"
            self.theoryx(doc, payload)
        else:
            raise ReceiptError("neither an in-toto Statement v1 nor a theoryx receipt")

    def blob(self, label: str, digests: Any, size: Any = None) -> None:
        if not isinstance(digests, dict) or "blake3" not in digests:
            self.v.add("blob", "skipped", f"{label}: no blake3 digest (not a theoryx blob)")
            return
        cid = f"b3:{digests['blake3']}"
        if not is_cid(cid):
            self.v.add("blob", "failed", f"{label}: malformed blake3 digest {digests['blake3']!r}")
            return
        found = self.stores.cas.stat(cid)
        if found is None:
            self.v.add("blob", "failed", f"{label}: {cid} is not in the store")
        elif not self.stores.cas.verify(cid):
            self.v.add("blob", "failed", f"{label}: {cid} does not rehash to its cid (corrupt)")
        elif size is not None and size != found.size:
            self.v.add("blob", "failed", f"{label}: {cid} is {found.size} bytes, the receipt says {size}")
        elif "sha256" in digests and digests["sha256"] != intoto.digest_set(self.stores, cid)["sha256"]:
            self.v.add("blob", "failed", f"{label}: sha256 {digests['sha256']} does not match {cid}")
        else:
            self.v.add("blob", "ok", f"{label} {cid}")

    def action(self, action_cid: Any, memo_key: Any, spec_digest: Any) -> dict[str, Any] | None:
        """Check the pre-image recomputes to ``memo_key``; return its body."""
        try:
            data = self.stores.cas.read(str(action_cid))
            body = json.loads(data)
            canonical = Action.from_body(body).data == data
        except (CasError, ValueError) as exc:
            self.v.add("memo key", "failed", f"the action pre-image {action_cid} cannot be read: {exc}")
            return None
        problems = []
        if not canonical:
            problems.append("the pre-image is not in RFC 8785 canonical form")
        if digest(data) != memo_key:
            problems.append(f"the pre-image hashes to {digest(data)}, not {memo_key}")
        if body.get("spec_digest") != spec_digest or canonical_digest(body.get("spec")) != spec_digest:
            problems.append(f"spec digest {spec_digest} does not recompute from the pre-image")
        self.v.add("memo key", "failed" if problems else "ok",
                   "; ".join(problems) or f"{memo_key} recomputes from the stored action pre-image")
        return body if isinstance(body, dict) else None

    def environment(self, adapter: Any, claimed: dict[str, Any], body: dict[str, Any]) -> None:
        """What the pre-image fixes about where it ran: the adapter's environment class, the
        image, the environment fingerprint (``claimed``: the receipt's values for ``env``,
        ``image`` and ``fingerprint``, None where the format has none)."""
        from theoryx.adapters import _ENV_CLASS

        raw = body.get("env")
        env: dict[str, Any] = raw if isinstance(raw, dict) else {}
        actual: dict[str, Any] = {"env_class": env.get("class"),
                                  "fingerprint": _fingerprint(body), "env": body.get("env"), "image": body.get("image")}
        said = {"env_class": _ENV_CLASS.get(str(adapter), f"unknown adapter {adapter!r}"), **claimed}
        bad = [k for k, v in said.items() if v is not None and v != actual[k]]
        self.v.add("environment", "failed" if bad else "ok",
                   f"differs from the action pre-image in {', '.join(bad)} (it ran as {actual['env_class']!r}, "
                   f"{actual['fingerprint']!r})" if bad
                   else f"adapter {adapter} and environment {actual['fingerprint']!r} are the pre-image's")

    def parameters(self, claimed: dict[str, Any], actual: dict[str, Any]) -> None:
        bad = [pointer(d.path) for d in deltas(claimed, actual)]
        self.v.add("parameters", "failed" if bad else "ok",
                   f"differ from the action pre-image at {', '.join(bad)}" if bad
                   else "what the receipt says ran is what the action pre-image says")

    def outputs(self, memo_key: Any, manifest_cid: Any, claimed: Sequence[tuple[str, ...]], execution_id: Any) -> None:
        """The outputs the receipt claims, as ``(path, cid)`` pairs — or ``(path, cid, size_bytes,
        mime)`` where the receipt states those (the theoryx format) —, are exactly its manifest's —
        each once: a path named twice could smuggle in another blob beside the real one —, and
        something binds that manifest to the memo key: this store's record of the execution,
        else its action cache entry for the memo key, else a verified signature. Without any of
        them the claim is unproven: a receipt edited to name other blobs of the store must not
        pass."""
        twice = sorted({p for p, n in collections.Counter(c[0] for c in claimed).items() if n > 1})
        if twice:
            self.v.add("outputs", "failed", f"the receipt names {', '.join(twice)[:300]} more than once")
            return
        try:
            manifest = json.loads(self.stores.cas.read(str(manifest_cid)))
            width = len(claimed[0]) if claimed else 2
            listed = sorted((str(o["path"]), str(o["cid"]), str(o["size_bytes"]), str(o["mime"]))[:width]
                            for o in manifest["outputs"])
        except (CasError, ValueError, TypeError, KeyError, RecursionError) as exc:
            self.v.add("outputs", "failed", f"the output manifest {manifest_cid} cannot be read: {exc}")
            return
        if listed != sorted(claimed):
            wrong = set(listed) ^ set(claimed)
            self.v.add("outputs", "failed", f"differ from the output manifest {manifest_cid} at "
                                            f"{', '.join(sorted({w[0] for w in wrong}))[:300]}")
            return
        try:
            rec: ExecutionRecord | None = executions.get(self.stores.db, str(execution_id))
        except NotFound:
            rec = None
        if rec is not None and rec.memo_key == memo_key and rec.manifest_cid == manifest_cid:
            self.v.add("outputs", "ok", f"the manifest {manifest_cid} of execution {rec.execution_id}")
            return
        from theoryx.store import action_cache

        entry = action_cache.get(self.stores.db, str(memo_key)) if is_cid(str(memo_key)) else None
        if entry is not None and entry.manifest_cid == manifest_cid:
            self.v.add("outputs", "ok", f"the action cache's result for {memo_key} (manifest {manifest_cid})")
        elif any(c.name == "signature" and c.status == "ok" for c in self.v.checks):
            self.v.add("outputs", "skipped", "nothing in this store binds them to the memo key; the verified "
                                             "signature vouches for them")
        else:
            held = f"a different result (manifest {entry.manifest_cid})" if entry is not None else "no result"
            self.v.add("outputs", "failed", f"nothing binds manifest {manifest_cid} to memo key {memo_key}: this "
                                            f"store has no execution {execution_id}, its action cache holds {held} "
                                            "for the memo key, and the receipt is not signed by a trusted key")

    def record(self, execution_id: Any, compare: Any) -> None:
        try:
            rec = executions.get(self.stores.db, str(execution_id))
        except NotFound:
            self.v.add("record", "skipped", f"execution {execution_id} is not in this store: its id, cost, "
                                            "plan, usage and timings are the receipt's word only (a signature by a "
                                            "trusted key is what vouches for them)")
            return
        try:
            expected = compare(rec)
        except StoreError as exc:      # a blob gone or corrupt (ERR_NOT_FOUND, ERR_CORRUPT_BLOB)
            self.v.add("record", "failed", exc.message)
            return
        if expected is True:
            self.v.add("record", "ok", f"identical to the receipt stored for execution {rec.execution_id}")
            return
        diffs = [pointer(d.path) for d in deltas(expected[0], expected[1])
                 if not any(d.path[: len(u)] == u for u in _UNCOMPARED)]
        self.v.add("record", "failed" if diffs else "ok",
                   f"differs from execution {rec.execution_id} as recorded at {', '.join(diffs[:10])}" if diffs
                   else f"matches execution {rec.execution_id} as recorded")

    def intoto(self, doc: dict[str, Any]) -> None:
        pred = doc.get("predicate") or {}
        if doc.get("predicateType") != intoto.PREDICATE_TYPE or not isinstance(pred, dict):
            raise ReceiptError(f"predicateType must be {intoto.PREDICATE_TYPE}")
        self.v.add("format", "ok", "in-toto Statement v1 with a SLSA provenance v1 predicate")
        bd, rd = pred.get("buildDefinition") or {}, pred.get("runDetails") or {}
        for s in doc.get("subject") or []:
            self.blob(f"subject {s.get('name')}", s.get("digest"))
        for r in [*(bd.get("resolvedDependencies") or []), *(rd.get("byproducts") or [])]:
            self.blob(str(r.get("name")), r.get("digest"))
        internal = bd.get("internalParameters") or {}
        body = self.action(internal.get("actionCid"), internal.get("memoKey"), internal.get("specDigest"))
        if body is not None:
            self.parameters(bd.get("externalParameters") or {}, {
                "ref": body.get("ref"), "inputs": body.get("inputs"), "seed": body.get("seed"),
                "writePrefix": body.get("write_prefix"), "salt": body.get("salt")})
            builder = str((rd.get("builder") or {}).get("id") or "")
            self.environment(builder.removeprefix(intoto.BUILDER_ID), {
                "env": internal.get("env"), "image": internal.get("image"),
                "fingerprint": internal.get("envFingerprint")}, body)
        invocation = (rd.get("metadata") or {}).get("invocationId")
        manifest = next((r for r in rd.get("byproducts") or [] if r.get("name") == "manifest.json"), None)
        claimed = [(str(s.get("name")), f"b3:{(s.get('digest') or {}).get('blake3')}")
                   for s in doc.get("subject") or []]
        if manifest is None:
            self.v.add("outputs", "failed", "the statement names no manifest.json byproduct")
        else:
            self.outputs(internal.get("memoKey"), f"b3:{(manifest.get('digest') or {}).get('blake3')}", claimed,
                         invocation)
        self.record(invocation, lambda rec: (intoto.statement(self.stores, rec), doc))

    def theoryx(self, doc: dict[str, Any], payload: bytes) -> None:
        self.v.add("format", "ok", f"theoryx receipt version {doc.get('version')}")
        for o in doc.get("outputs") or []:
            self.blob(f"output {o.get('path')}", {"blake3": str(o.get("cid", "")).removeprefix("b3:")},
                      o.get("size_bytes"))
        for name in ("manifest_cid", "stdout_cid", "stderr_cid"):
            if doc.get(name):
                self.blob(name.removesuffix("_cid"), {"blake3": str(doc[name]).removeprefix("b3:")})
        for cid in doc.get("input_cids") or []:
            self.blob("input", {"blake3": str(cid).removeprefix("b3:")})
        body = self.action(doc.get("action_cid"), doc.get("memo_key"), doc.get("spec_digest"))
        if body is not None:
            claimed = {k: doc.get(k) for k in ("ref", "seed", "write_prefix")}
            actual = {k: body.get(k) for k in ("ref", "seed", "write_prefix")}
            claimed["input_cids"] = sorted(doc.get("input_cids") or [])
            actual["input_cids"] = sorted({a["cid"] for _, a in intoto.artifact_uses(body.get("inputs"))})
            self.parameters(claimed, actual)
            self.environment(doc.get("adapter"), {"fingerprint": doc.get("env_fingerprint")}, body)

        outputs = doc.get("outputs") or []
        pairs = [(str(o.get("path")), str(o.get("cid"))) for o in outputs]
        stated = [(str(o.get("path")), str(o.get("cid")), str(o.get("size_bytes")), str(o.get("mime")))
                  for o in outputs]
        if doc.get("output_cids") != dict(pairs):
            self.v.add("outputs", "failed", "output_cids and outputs name different blobs")
        else:
            self.outputs(doc.get("memo_key"), doc.get("manifest_cid"), stated, doc.get("execution_id"))

        def compare(rec: ExecutionRecord) -> Any:
            stored = receipts.receipt_bytes(rec) if receipts.derived(rec) else None
            if (stored is not None and cid_of_bytes(stored) == cid_of_bytes(payload)) or \
                    rec.receipt_cid == cid_of_bytes(payload):
                return True
            try:
                return json.loads(stored if stored is not None else self.stores.cas.read(rec.receipt_cid or "")), doc
            except (CasError, ValueError) as exc:
                raise NotFound(f"the stored receipt of {rec.execution_id} cannot be read: {exc}") from None

        self.record(doc.get("execution_id"), compare)


def _fingerprint(body: dict[str, Any]) -> str | None:
    try:
        return receipts.env_fingerprint(body)
    except (KeyError, TypeError, AttributeError):
        return None


def verify(stores: Stores, data: bytes, key: Path | None = None) -> Verification:
    """Verify receipt file bytes (see the module docstring); never raises for a bad receipt."""
    return _Verifier(stores, key).run(data)


__all__ = ["FORMATS", "Check", "Verification", "export", "verify"]
