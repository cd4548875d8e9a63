"""Why two memo keys differ: a field-by-field diff of the stored action pre-images.

Each :class:`Change` names one ingredient of the key (see :mod:`theoryx.pipeline.action`):

- ``spec``: a spec execution field by dotted path (``runtime.timeout``, ``outputs[0].mime``);
- ``context``: a file of the image build context (from the context manifests in the CAS);
- ``image``: any other part of the image identity (kind, build args, pinned ref);
- ``input``: a JSON pointer into the rewritten inputs;
- ``attachment``: an attachment at a JSON pointer whose cid (or file name) changed;
- ``seed``, ``write_prefix``, ``salt``, ``env`` (environment class and platform), ``ref``,
  ``version`` (key format) and ``other`` for fields this version does not know.

``spec_digest`` is derived from ``spec`` and is only reported when it disagrees on its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cas import BlobNotFound, CasError, CorruptBlob, is_cid
from theoryx.core.jsondiff import ABSENT, Delta, deltas, dotted, pointer, show
from theoryx.errors import NotFound
from theoryx.store import action_cache, executions
from theoryx.store.handle import Stores, store_error

ManifestLookup = Callable[[str], dict[str, Any] | None]
_ORDER = ("v", "salt", "ref", "spec", "spec_digest", "image", "env", "inputs", "write_prefix", "seed")
_ACTION_FIELDS = ("v", "ref", "spec", "image", "env", "inputs")
"""Fields every action pre-image has (a blob without them is some other blob of the store)."""
_LABEL = {"v": "version", "salt": "salt", "ref": "ref", "seed": "seed", "write_prefix": "write_prefix"}


@dataclass(frozen=True)
class Change:
    """One ingredient that differs: its kind, where (path, file or pointer) and both sides."""

    kind: str
    where: str
    old: Any
    new: Any
    note: str = ""

    def describe(self) -> str:
        """One line for people, e.g. ``spec field runtime.timeout: 300 -> 299``."""
        head = {
            "spec": f"spec field {self.where}", "context": f"image context file {self.where}",
            "image": f"image {self.where}", "input": f"input {self.where or '/'}",
            "attachment": f"attachment {self.where or '/'}", "env": f"env {self.where}",
            "write_prefix": "write prefix", "version": "key format version",
        }.get(self.kind, self.where or self.kind)
        if self.kind == "context":
            body = f"{_file(self.old)} -> {_file(self.new)}"
        elif self.kind == "attachment":
            body = f"{_artifact(self.old)} -> {_artifact(self.new)}"
        else:
            body = f"{show(self.old)} -> {show(self.new)}"
        return f"{head}: {body}" + (f" ({self.note})" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "old": _plain(self.old), "new": _plain(self.new),
                "note": self.note, "text": self.describe()}


def _plain(value: Any) -> Any:
    return None if value is ABSENT else value


def _file(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "(absent)"
    return f"{entry['cid']} ({entry['size']} bytes{', executable' if entry.get('exec') else ''})"


def _is_artifact(value: Any) -> bool:
    return isinstance(value, dict) and "$artifact" in value and "cid" in value


def _artifact(value: Any) -> str:
    if not _is_artifact(value):
        return show(value)
    name = str(value["$artifact"]).rsplit("/", 1)[-1]
    size = f", {value['size']} bytes" if "size" in value else ""
    return f"{name} {value['cid']}{size}"


def _context_changes(a: dict[str, Any], b: dict[str, Any], manifests: ManifestLookup) -> list[Change]:
    old, new = manifests(a["context"]), manifests(b["context"])
    if old is None or new is None:
        return [Change("context", "(build context)", a["context"], b["context"],
                       "a context manifest is not in the store; no file-level detail")]
    out = []
    for rel in sorted(set(old) | set(new)):
        o, n = old.get(rel, ABSENT), new.get(rel, ABSENT)
        if o != n:
            note = "added" if o is ABSENT else "removed" if n is ABSENT else ""
            out.append(Change("context", rel, o, n, note))
    return out


def _image_changes(a: Any, b: Any, manifests: ManifestLookup) -> list[Change]:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [Change("image", "identity", a, b)]
    same_kind = a.get("kind") == b.get("kind")
    out = []
    for d in deltas(a, b):
        if d.path[:1] == ("context",) and same_kind and "context" in a and "context" in b:
            out += _context_changes(a, b, manifests)
        else:
            out.append(Change("image", dotted(d.path), d.old, d.new))
    return out


def _input_change(d: Delta) -> Change:
    kind = "attachment" if _is_artifact(d.old) or _is_artifact(d.new) else "input"
    note = ""
    if kind == "attachment" and _is_artifact(d.old) and _is_artifact(d.new):
        if d.old["cid"] == d.new["cid"]:
            note = "same content, other file name"
    return Change(kind, pointer(d.path), d.old, d.new, note)


def diff_actions(a: dict[str, Any], b: dict[str, Any], manifests: ManifestLookup) -> list[Change]:
    """The changes from action body ``a`` to ``b``, in key-ingredient order."""
    out: list[Change] = []
    keys = [k for k in _ORDER if k in a or k in b] + sorted((set(a) | set(b)) - set(_ORDER))
    for key in keys:
        old, new = a.get(key, ABSENT), b.get(key, ABSENT)
        if key == "spec":
            out += [Change("spec", dotted(d.path), d.old, d.new) for d in deltas(old, new)]
        elif key == "spec_digest":
            if not deltas(a.get("spec"), b.get("spec")) and deltas(old, new):
                out.append(Change("spec", "(digest)", old, new, "the digest disagrees with the fields"))
        elif key == "image":
            out += _image_changes(old, new, manifests)
        elif key == "env":
            out += [Change("env", dotted(d.path), d.old, d.new) for d in deltas(old, new)]
        elif key == "inputs":
            out += [_input_change(d) for d in deltas(old, new, atom=_is_artifact)]
        elif deltas(old, new):
            out.append(Change(_LABEL.get(key, "other"), key, old, new))
    return out


def store_manifests(stores: Stores, extra: dict[str, dict[str, Any]] | None = None) -> ManifestLookup:
    """Context manifests by cid: ``extra`` (not yet stored), else read from the CAS."""

    def lookup(cid: str) -> dict[str, Any] | None:
        if extra and cid in extra:
            return extra[cid]
        try:
            files = json.loads(stores.cas.read(cid))["files"]
        except (BlobNotFound, CorruptBlob, ValueError, KeyError, TypeError):
            return None
        return files if isinstance(files, dict) else None

    return lookup


@dataclass(frozen=True)
class Side:
    """One side of an explanation: what was named, its memo key and the action body."""

    name: str
    execution_id: str | None
    memo_key: str
    body: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "execution_id": self.execution_id, "memo_key": self.memo_key}


def resolve(stores: Stores, target: str) -> Side:
    """An execution id (or unique prefix) or a memo key -> its stored action pre-image.
    A memo key is resolved through its action cache entry, else the pre-image blob itself (an
    action's cid is its memo key). :class:`NotFound` when neither is there, or when the blob a
    cid names is no action pre-image (an output, a manifest); :class:`CorruptBlobError` when the
    pre-image is corrupt."""
    execution_id = None
    if is_cid(target):
        entry = action_cache.get(stores.db, target)
        action_cid, memo_key = (entry.action_cid if entry else target), target
    else:
        rec = executions.get(stores.db, target)
        if not rec.action_cid or not rec.memo_key:
            raise NotFound(f"execution {rec.execution_id} has no stored action (it failed before its "
                           f"key was computed or stored)")
        execution_id, action_cid, memo_key = rec.execution_id, rec.action_cid, rec.memo_key
    try:
        body = json.loads(stores.cas.read(action_cid))
    except BlobNotFound:
        raise NotFound(f"the action pre-image {action_cid} of {target} is not in the store") from None
    except CasError as exc:      # corrupt (now quarantined), unreadable
        raise store_error(exc, f"the action pre-image {action_cid} of {target}") from None
    except (ValueError, RecursionError):
        body = None
    if not (isinstance(body, dict) and all(k in body for k in _ACTION_FIELDS)):
        raise NotFound(f"{target} names no action: the blob {action_cid} in the store is not an action "
                       f"pre-image (give an execution id or a memo key)")
    return Side(target, execution_id, memo_key, body)


@dataclass(frozen=True)
class Explanation:
    a: Side
    b: Side
    changes: tuple[Change, ...]

    @property
    def identical(self) -> bool:
        return self.a.memo_key == self.b.memo_key

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "identical": self.identical,
                "changes": [c.to_dict() for c in self.changes]}

    def lines(self) -> list[str]:
        """The human report."""
        head = [f"A: {self.a.name}  memo key {self.a.memo_key}", f"B: {self.b.name}  memo key {self.b.memo_key}"]
        if self.identical:
            return [*head, "Identical memo keys: the two actions are the same; their results are interchangeable."]
        if not self.changes:
            return [*head, "The keys differ but the stored pre-images show no difference (a pre-image "
                           "does not hash to its key: run `theoryx verify`)."]
        return [*head, f"{len(self.changes)} difference(s):", *(f"  {c.describe()}" for c in self.changes)]


def explain(stores: Stores, a: str, b: str) -> Explanation:
    """Why ``a`` and ``b`` (execution ids or memo keys) have different memo keys."""
    left, right = resolve(stores, a), resolve(stores, b)
    changes = () if left.memo_key == right.memo_key else tuple(
        diff_actions(left.body, right.body, store_manifests(stores)))
    return Explanation(left, right, changes)
