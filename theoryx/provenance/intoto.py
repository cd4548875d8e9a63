"""An execution as an in-toto Statement v1 carrying a SLSA provenance v1 predicate.

- ``subject``: every output, named by its world path, with the digest set
  ``{"blake3": <hex of the cid>, "sha256": <hex>}``;
- ``predicate.buildDefinition``: ``buildType`` :data:`BUILD_TYPE`; ``externalParameters`` =
  what the user chose (ref, rewritten inputs, seed, write prefix, salt); ``internalParameters`` =
  what theoryx derived (memo key, action cid, spec digest, key version, image identity,
  environment class, whether the result came from the cache and from which execution);
  ``resolvedDependencies`` = the action pre-image, the image build context manifest (or the
  pinned image) and every attachment, with the JSON pointers where the inputs use it;
- ``predicate.runDetails``: ``builder.id`` :data:`BUILDER_ID` + the adapter, ``metadata``
  (``invocationId`` = execution id, ``startedOn``/``finishedOn`` in RFC 3339 UTC) and the
  execution's own files as ``byproducts`` (receipt, output index and manifest, logs).

The same execution always gives the same statement (only ``builder.version`` follows theoryx).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from cas import BlobNotFound, CasError
from theoryx import __version__
from theoryx.core.jsondiff import pointer
from theoryx.errors import NotFound
from theoryx.store import receipts
from theoryx.store.executions import ExecutionRecord
from theoryx.store.handle import Stores, store_error

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "https://theoryx.dev/build-types/processor/v1"
BUILDER_ID = "https://theoryx.dev/builders/"


def digest_set(stores: Stores, cid: str) -> dict[str, str]:
    """``{"blake3", "sha256"}`` of a stored blob (streamed and checked against its cid, so the
    sha256 is never that of corrupt bytes); :class:`NotFound` when absent,
    :class:`~theoryx.errors.CorruptBlobError` when corrupt (the blob is then quarantined)."""
    h = hashlib.sha256()
    try:
        with stores.cas.open_verified(cid) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except BlobNotFound:
        raise NotFound(f"blob {cid} is no longer in the store") from None
    except CasError as exc:
        raise store_error(exc) from None
    return {"blake3": cid.removeprefix("b3:"), "sha256": h.hexdigest()}


def timestamp(ms: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def artifact_uses(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """``(JSON pointer, $artifact object)`` for every attachment in rewritten inputs."""
    if isinstance(value, dict):
        if "$artifact" in value and "cid" in value:
            return [(pointer(path), value)]
        return [u for k in sorted(value) for u in artifact_uses(value[k], (*path, k))]
    if isinstance(value, list):
        return [u for i, v in enumerate(value) for u in artifact_uses(v, (*path, i))]
    return []


def _resource(stores: Stores, name: str, cid: str, media: str, uri: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "digest": digest_set(stores, cid), "mediaType": media}
    if uri:
        out["uri"] = uri
    return out


def _dependencies(stores: Stores, rec: ExecutionRecord, action: dict[str, Any]) -> list[dict[str, Any]]:
    deps = [_resource(stores, "action.json", rec.action_cid or "", "application/json",
                      f"{receipts.EXECUTION_ROOT}{rec.execution_id}/action.json")]
    image = action.get("image", {})
    if "context" in image and stores.cas.exists(image["context"]):
        deps.append(_resource(stores, "image-context.json", image["context"], "application/json"))
    if image.get("kind") == "ref":
        deps.append({"name": "image", "uri": image["ref"], "digest": {"sha256": image["ref"].rsplit(":", 1)[1]}})
    uses: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    for ptr, art in artifact_uses(action.get("inputs")):
        uses.setdefault((art["cid"], art["$artifact"]), (art, []))[1].append(ptr)
    for (cid, world), (art, ptrs) in sorted(uses.items(), key=lambda kv: kv[0][1]):
        dep = _resource(stores, world.rsplit("/", 1)[-1], cid, str(art.get("mime", "application/octet-stream")), world)
        dep["annotations"] = {"pointers": ptrs}
        deps.append(dep)
    return deps


def _byproducts(stores: Stores, rec: ExecutionRecord) -> list[dict[str, Any]]:
    files = {p: c for p, c in receipts.execution_files(rec, stores.cas).items() if not p.endswith("/action.json")}
    out = [_resource(stores, p.rsplit("/", 1)[-1], c, "text/plain" if p.endswith(".log") else "application/json", p)
           for p, c in sorted(files.items())]
    if rec.manifest_cid:
        out.append(_resource(stores, "manifest.json", rec.manifest_cid, "application/json"))
    return out


def statement(stores: Stores, rec: ExecutionRecord) -> dict[str, Any]:
    """The statement for a successful execution (see the module docstring)."""
    if rec.status != "success" or not rec.action_cid:
        raise NotFound(f"execution {rec.execution_id} did not succeed: it has no provenance to state")
    try:
        action = json.loads(stores.cas.read(rec.action_cid))
    except BlobNotFound:
        raise NotFound(f"the action pre-image {rec.action_cid} is no longer in the store") from None
    except CasError as exc:
        raise store_error(exc, f"the action pre-image {rec.action_cid}") from None
    finished = rec.started_ms + rec.duration_ms
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": o.path, "digest": digest_set(stores, o.cid)} for o in rec.outputs],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "ref": action["ref"], "inputs": action["inputs"], "seed": action["seed"],
                    "writePrefix": action["write_prefix"], "salt": action["salt"],
                },
                "internalParameters": {
                    "memoKey": rec.memo_key, "actionCid": rec.action_cid, "specDigest": action["spec_digest"],
                    "keyVersion": action["v"], "image": action["image"], "env": action["env"],
                    "envFingerprint": rec.env_fingerprint, "cacheHit": rec.cache == "hit",
                    "sourceExecution": rec.source_execution,
                },
                "resolvedDependencies": _dependencies(stores, rec, action),
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID + rec.adapter, "version": {"theoryx": __version__}},
                "metadata": {"invocationId": rec.execution_id, "startedOn": timestamp(rec.started_ms),
                             "finishedOn": timestamp(finished)},
                "byproducts": _byproducts(stores, rec),
            },
        },
    }
