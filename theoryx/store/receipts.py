"""Receipts and output indexes, both reachable by world path.

A miss stores both as blobs when it is recorded. A hit's are *derived*: both are pure functions of
its execution record (nothing in them is known only at run time), so a hit stores neither and
:func:`execution_files` writes them on first request (idempotent, content-addressed: the same
record always gives the same bytes and cids). That keeps a hit's record small and its recording
free of blob writes, while ``cat``, ``export``, ``show`` and receipts keep working for every
execution.

``/artifacts/execution/<id>/determinism.json`` (the receipt) holds what an auditor needs:
seed, memo key, action cid (the stored pre-image), spec digest, env fingerprint, output cids,
adapter, cache hit, plan and charge (``cost_micros``: what the execution cost; ``charged_micros``:
what was charged to ``plan``, 0 without one or on a hit; ``saved_micros``: a hit's saving), timings
and the theoryx version.
``/artifacts/execution/<id>/outputs.json`` (the index) lists the outputs.
"""

from __future__ import annotations

import json

from cas import Store, cid_of_bytes
from theoryx import __version__
from theoryx.store.action_cache import OutputEntry
from theoryx.store.executions import ExecutionRecord

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

EXECUTION_ROOT = "/artifacts/execution/"


def receipt_path(execution_id: str) -> str:
    return f"{EXECUTION_ROOT}{execution_id}/determinism.json"


def index_path(execution_id: str) -> str:
    return f"{EXECUTION_ROOT}{execution_id}/outputs.json"


def env_fingerprint(action: dict[str, Any]) -> str:
    """A one-line human summary of the environment part of the key."""
    env = action["env"]
    img = action["image"]
    parts = [env["class"]] + ([env["platform"]] if "platform" in env else [])
    if img["kind"] == "ref":
        parts.append(f"image={img['ref']}")
    else:
        parts.append(f"{img['kind']}-context={img['context'][:19]}")
        base = img.get("build_args", {}).get("BASE_IMAGE")
        if base:
            parts.append(f"base={base}")
    return " ".join(parts)


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def receipt_body(rec: ExecutionRecord) -> dict[str, Any]:
    return {
        "version": 1,
        "execution_id": rec.execution_id,
        "ref": rec.ref,
        "adapter": rec.adapter,
        "cache_hit": rec.cache == "hit",
        "source_execution": rec.source_execution,
        "seed": rec.seed,
        "memo_key": rec.memo_key,
        "action_cid": rec.action_cid,
        "spec_digest": rec.spec_digest,
        "env_fingerprint": rec.env_fingerprint,
        "write_prefix": rec.write_prefix,
        "output_cids": {o.path: o.cid for o in rec.outputs},
        "outputs": [o.to_dict() for o in rec.outputs],
        "manifest_cid": rec.manifest_cid,
        "input_cids": list(rec.input_cids),
        "stdout_cid": rec.stdout_cid,
        "stderr_cid": rec.stderr_cid,
        "plan": rec.plan,
        "cost_micros": rec.cost_micros,
        "charged_micros": rec.cost_micros if rec.plan is not None else 0,
        "saved_micros": rec.saved_micros,
        "usage": rec.usage,
        "timings": {"started_ms": rec.started_ms, "duration_ms": rec.duration_ms},
        "theoryx_version": __version__,
    }


def index_bytes(rec: ExecutionRecord) -> bytes:
    return _dump({"execution_id": rec.execution_id, "outputs": [o.to_dict() for o in rec.outputs]})


def receipt_bytes(rec: ExecutionRecord) -> bytes:
    return _dump(receipt_body(rec))


def write(rec: ExecutionRecord, cas: Store) -> ExecutionRecord:
    """Store the index and the receipt; return the record naming both."""
    index = cas.put_bytes(index_bytes(rec))
    receipt = cas.put_bytes(receipt_bytes(rec))
    return rec.with_(index_cid=index.cid, receipt_cid=receipt.cid)


def derived(rec: ExecutionRecord) -> bool:
    """True for a successful hit recorded without receipt and index blobs (they are derived)."""
    return rec.status == "success" and rec.cache == "hit" and rec.receipt_cid is None


def execution_files(rec: ExecutionRecord, cas: Store | None = None) -> dict[str, str]:
    """World path -> cid of an execution's own files. A hit's derived receipt and index are
    written into ``cas`` first when it is given (so the cids can be read), else only named."""
    files = {}
    if derived(rec):
        if cas is not None:
            rec = write(rec, cas)
        else:
            rec = rec.with_(index_cid=cid_of_bytes(index_bytes(rec)), receipt_cid=cid_of_bytes(receipt_bytes(rec)))
    if rec.receipt_cid:
        files[receipt_path(rec.execution_id)] = rec.receipt_cid
    if rec.index_cid:
        files[index_path(rec.execution_id)] = rec.index_cid
    if rec.stdout_cid:
        files[f"{EXECUTION_ROOT}{rec.execution_id}/stdout.log"] = rec.stdout_cid
    if rec.stderr_cid:
        files[f"{EXECUTION_ROOT}{rec.execution_id}/stderr.log"] = rec.stderr_cid
    if rec.action_cid:
        files[f"{EXECUTION_ROOT}{rec.execution_id}/action.json"] = rec.action_cid
    return files


__all__ = ["OutputEntry", "derived", "env_fingerprint", "execution_files", "index_bytes", "index_path",
           "receipt_bytes", "receipt_path", "write"]
