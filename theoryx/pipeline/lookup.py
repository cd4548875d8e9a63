"""Step 2, *look up*: the action cache entry for a memo key, valid only if all its blobs exist."""

from __future__ import annotations

from theoryx.core import syncpoints
from theoryx.store import action_cache
from theoryx.store.action_cache import ActionResult
from theoryx.store.handle import Stores
from theoryx.store.leases import Lease


def lookup(stores: Stores, lease: Lease, memo_key: str) -> ActionResult | None:
    """The validated entry for ``memo_key``, or None (a miss). Its blobs are leased *before*
    their existence is checked, so a concurrent gc keeps (or puts back) what the hit serves."""
    entry = action_cache.get(stores.db, memo_key)
    if entry is None:
        return None
    lease.add(entry.blobs())
    result = action_cache.validated(stores.cas, entry)
    syncpoints.point("after_lookup")
    return result
