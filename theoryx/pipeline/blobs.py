"""Using a blob the run has leased, even if a concurrent gc withdrew it a moment ago."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cas import BlobNotFound
from theoryx.errors import StoreError
from theoryx.store.handle import Stores

T = TypeVar("T")


def leased(stores: Stores, cid: str, use: Callable[[], T]) -> T:
    """Run ``use`` on a blob this run has leased. If a concurrent gc withdrew it between its
    last lease read and its rename, put it back now — gc's own recovery would, because the lease
    names it — and try once more."""
    try:
        return use()
    except BlobNotFound:
        if not stores.cas.reinstate(cid):
            raise StoreError(f"blob {cid} vanished from the store during the run (see `theoryx verify`)") from None
        return use()
