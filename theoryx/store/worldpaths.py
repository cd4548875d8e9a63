"""Resolving world paths (and bare cids) to blobs.

- ``b3:<hex>``: the blob itself;
- ``/artifacts/inputs/<cid>/<file>``: the attachment blob;
- ``/artifacts/execution/<id>/<file>``: an execution's receipt, index, logs or action;
- any other ``/artifacts/...`` path: the newest execution's output at that path.
"""

from __future__ import annotations

from cas import is_cid
from theoryx.errors import NotFound, UsageError
from theoryx.store import executions, receipts
from theoryx.store.handle import Stores


def resolve(stores: Stores, target: str) -> str:
    """The cid named by ``target``; :class:`NotFound` when nothing is there."""
    if is_cid(target):
        if not stores.cas.exists(target):
            raise NotFound(f"blob {target} is not in the store")
        return target
    if not target.startswith("/artifacts/"):
        raise UsageError(f"{target!r} is neither a cid (b3:...) nor a world path (/artifacts/...)")
    parts = target.split("/")
    if target.startswith("/artifacts/inputs/") and len(parts) >= 5 and is_cid(parts[3]):
        cid = parts[3]
    elif target.startswith(receipts.EXECUTION_ROOT) and len(parts) == 5:
        rec = executions.get(stores.db, parts[3])
        files = receipts.execution_files(rec, stores.cas)
        cid_or_none = files.get(f"{receipts.EXECUTION_ROOT}{rec.execution_id}/{parts[4]}")
        if cid_or_none is None:
            has = ", ".join(p.rsplit("/", 1)[1] for p in sorted(files))
            raise NotFound(f"execution {rec.execution_id} has no file {parts[4]!r} "
                           + (f"(has: {has})" if has else f"(it has none: its status is {rec.status})"))
        cid = cid_or_none
    else:
        entry = executions.world_path(stores.db, target)
        if entry is None:
            raise NotFound(f"no execution produced {target}")
        cid = entry.cid
    if not stores.cas.exists(cid):
        raise NotFound(f"{target} names blob {cid}, which is no longer in the store: pruned by "
                       "`theoryx gc` (or removed as corrupt by `theoryx verify --repair`); run the "
                       "execution again to recompute it")
    return cid
