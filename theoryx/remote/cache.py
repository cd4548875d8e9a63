"""Fetch and publish action results through the team cache.

``fetch`` runs on a local miss: read the signed entry for the memo key, accept it only if a
trusted key signed it and it is about that key, take the blobs it carries inline and download
every other blob it names that the local CAS lacks (in parallel, each checked against its cid
before it is published), make them durable — those written and those found already stored,
which may be another writer's unsynced copies (``cas.Store.ensure_durable``), all under one
filesystem sync where the store defers — then put the entry into the local action cache, so
later hits are local. A result of small blobs costs one request. ``publish`` runs after a
successful miss when this client may upload: HEAD each blob, PUT the missing ones, then PUT the
signed entry (carrying the smallest blobs inline), last, so that no entry on the remote ever
names a blob that is not there.

Faults never fail a run: both return normally whatever the remote does (``strict=True`` raises
instead, for ``theoryx remote push``). A remote that failed is reported once, with one warning
notice, and then left alone for :data:`SKIP_AFTER_FAILURE_S` in this process, so a batch pays
the timeout once rather than once per run: a failed lookup stops lookups and uploads, a failed
upload only uploads (a writer refused by the server, 401/403, still reads what others share).
Entries that fail verification are ignored (a miss), counted and reported with one warning per
run.
"""

from __future__ import annotations

import _thread
import time
from dataclasses import dataclass
from pathlib import Path

from theoryx.core import notices, syncpoints
from theoryx.errors import RemoteError, RemoteRejected, TheoryxError
from theoryx.remote import layout
from theoryx.remote.config import RemoteConfig, load
from theoryx.store import action_cache
from theoryx.store.action_cache import ActionResult
from theoryx.store.handle import Stores

TYPE_CHECKING = False  # typing stays unimported at run time: a remote miss stays cheap
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, TypeVar

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from theoryx.remote.client import RemoteStore
    from theoryx.store.leases import Lease

    T = TypeVar("T")

SKIP_AFTER_FAILURE_S = 60.0
"""After a remote fails (unreachable, timed out, refusing), this process skips it this long: for
lookups and uploads after a failed lookup, for uploads only after a failed upload."""

__all__ = ["Local", "Published", "RemoteConfig", "configured", "fetch", "publish"]

_lock = _thread.allocate_lock()  # `threading` is imported by the transfers that start threads
_down_until: dict[tuple[str, str], float] = {}   # (url, "read" | "write") -> monotonic time
_stores: dict[RemoteConfig, RemoteStore] = {}


def configured(home_root: Path, remote: str | None = None, *, warn: notices.Warn = notices.each) -> RemoteConfig | None:
    """The team cache for this home and run (see :func:`theoryx.remote.config.load`), or None.
    A malformed setting is reported as one warning (through ``warn``: a batch reports it once)
    and means no remote: a run never fails on it."""
    try:
        return load(home_root, remote)
    except TheoryxError as exc:
        warn("runs without the team cache (its configuration is unusable)", f"team cache disabled: {exc.message}")
        return None


def store_for(config: RemoteConfig) -> RemoteStore:
    """The process's :class:`RemoteStore` for ``config`` (opened once, obstore imported then)."""
    from theoryx.remote.client import RemoteStore

    with _lock:
        store = _stores.get(config)
        if store is None:
            store = _stores[config] = RemoteStore(config)
        return store


def _is_down(config: RemoteConfig, use: str = "read") -> bool:
    """Whether ``use`` ("read" or "write") of this remote is being skipped after a failure."""
    with _lock:
        return _down_until.get((config.url, use), 0.0) > time.monotonic()


def _mark_down(config: RemoteConfig, *uses: str) -> None:
    """Skip ``uses`` of this remote for :data:`SKIP_AFTER_FAILURE_S`."""
    until = time.monotonic() + SKIP_AFTER_FAILURE_S
    with _lock:
        for use in uses:
            _down_until[(config.url, use)] = until


def reset() -> None:
    """Forget failed remotes and open stores (tests; a long-lived process after a fix)."""
    with _lock:
        _down_until.clear()
        _stores.clear()


# -- read ---------------------------------------------------------------------------------------


UNSTATED_MAX = 4 * layout.MAX_ENTRY_BYTES
"""The most a blob whose size the entry does not state may have (its manifest, its receipt, an
input or action pre-image the reader lacks): they describe what the entry itself, at most
:data:`~theoryx.remote.layout.MAX_ENTRY_BYTES`, lists. Logs are bounded by ``log_limit``."""
LOG_SLACK = 4096
"""A stored log is at most ``limits.log_bytes`` plus the marker line (theoryx.adapters.logs)."""


@dataclass(frozen=True)
class Local:
    """What the run asking the team cache holds already: its action pre-image (whose cid is the
    memo key), its attachments (``(cid, file)``, as ``Prepared.sources``) and its spec's
    ``limits.log_bytes`` (the bound of a log it may download)."""

    action: bytes
    sources: tuple[tuple[str, Path], ...]
    log_bytes: int


def fetch(stores: Stores, memo_key: str, config: RemoteConfig, *, lease: Lease | None = None,
          commit: bool = True, local: Local | None = None, warn: notices.Warn = notices.each) -> ActionResult | None:
    """The verified remote action result for ``memo_key``, with all its blobs durable in the
    local CAS and (with ``commit``) the entry in the local action cache; or None (absent,
    untrusted, tampered, or the remote failed: one warning notice then). ``commit=False`` is for a
    caller that commits the entry itself, with the record of the hit, in one transaction. Every
    cid is added to ``lease`` before it is downloaded or checked, as a miss does with what it
    writes. The entry must name the memo key's own pre-image as its action (the action cid is
    the memo key). What ``local`` holds is stored from there, never downloaded; a blob whose size
    the entry does not state is refused past a bound (``local.log_bytes`` for logs, when given,
    :data:`UNSTATED_MAX` for the rest) before its body is read. A Ctrl-C
    during the downloads cancels them all and leaves nothing behind. Never raises for remote
    trouble; its warning goes through ``warn`` (a batch counts them and reports each kind once)."""
    if _is_down(config):
        return None
    try:
        return _fetch(stores, memo_key, config, lease, commit, local)
    except RemoteRejected as exc:
        warn("team cache entries ignored", f"ignored 1 remote cache entry for {memo_key} from {config.url}: "
             f"{exc.message}; executing locally instead")
    except RemoteError as exc:
        _mark_down(config, "read", "write")
        warn("team cache lookups failed", f"team cache unavailable, continuing locally: {exc.message}")
    except Exception as exc:  # whatever else went wrong, the run goes on locally
        warn("team cache lookups failed", f"team cache lookup failed, continuing locally: {_unexpected(exc)}")
    return None


def _unexpected(exc: BaseException) -> str:
    from theoryx.remote.client import describe

    return f"{type(exc).__name__}: {describe(exc)}"


def _fetch(stores: Stores, memo_key: str, config: RemoteConfig, lease: Lease | None,
           commit: bool, local: Local | None) -> ActionResult | None:
    remote = store_for(config)
    raw = remote.get_small(layout.entry_path(memo_key), layout.MAX_ENTRY_BYTES)
    if raw is None:
        return None
    from theoryx.remote import trust  # cryptography: loaded only once there is an entry to check

    payload = layout.decode(trust.verified(raw, layout.PAYLOAD_TYPE, trust.trusted_keys(config)), memo_key)
    if payload.entry.action_cid != memo_key:
        raise RemoteRejected(f"the entry names the action pre-image {payload.entry.action_cid}, not the "
                             "memo key's own")
    # What the hit needs: the entry's blobs. The producer's receipt is in the signed payload;
    # its blob is the remote's copy for other readers, named by nothing here (stored, it would be
    # an orphan that `verify` reports and gc removes), so it is neither fetched nor stored.
    needed = list(dict.fromkeys(payload.entry.blobs()))
    if lease is not None:
        lease.add(needed if local is None else [*needed, *(cid for cid, _ in local.sources)])
    cas = stores.cas
    # One durability point for the entry's small blobs: what this thread writes skips its own
    # fsyncs and one sync covers it on leaving the block, before the caller commits the entry. A
    # large blob streamed on a helper thread of `_parallel` is fsynced as it is published
    # (deferral is per thread): durable either way.
    with cas.deferred():
        if local is not None:
            from theoryx.pipeline.attachments import store_files

            cas.put_bytes(local.action)
            store_files(local.sources, cas)
        # Blobs already here are neither fetched nor written again; each is made durable (the
        # copy found may be another thread's or process's unsynced write) like those written.
        absent = cas.ensure_durable(needed)
        small = {c: payload.inline[c] for c in absent if c in payload.inline}
        missing = [c for c in absent if c not in small]
        sizes = payload.sizes()
        logs = {c for c in (payload.entry.stdout_cid, payload.entry.stderr_cid) if c}
        log_limit = UNSTATED_MAX if local is None else local.log_bytes + LOG_SLACK
        import threading

        cancel = threading.Event()      # set when the calling thread is interrupted

        def get(cid: str) -> bytes | None:
            # A small blob comes back in memory, checked; a large one streams into the CAS here.
            path = layout.blob_path(cid)
            limit = log_limit if cid in logs else UNSTATED_MAX
            data = remote.get_blob(path, cid, sizes.get(cid), limit=limit)
            if data is None:
                remote.download(path, cid, cas, sizes.get(cid), limit=limit, cancel=cancel)
            return data

        for cid, data in zip(missing, _parallel(config.concurrency, missing, get, cancel), strict=True):
            if data is not None:
                small[cid] = data
        rc = payload.receipt_cid
        if rc and payload.receipt is not None and rc in payload.inline and rc not in needed:
            # carried inline anyway (checked against its cid): it must be the signed receipt
            if _json(payload.inline[rc]) != payload.receipt:
                raise RemoteRejected("the receipt blob differs from the signed receipt")
        cas.put_many(small.values())  # checked against their cids (layout.decode, get_blob)
    entry = payload.entry.used_at(int(time.time() * 1000))
    if commit:
        action_cache.put(stores.db, entry)
    return entry


def _json(data: bytes) -> Any:
    import json

    try:
        return json.loads(data)
    except ValueError:
        raise RemoteRejected("not JSON") from None


def _parallel(workers: int, items: Sequence[str], fn: Callable[[str], T],
              stopped: threading.Event | None = None) -> list[T]:
    """``fn`` over ``items``, in their order, on at most ``workers`` threads, the calling thread
    being one of them (a thread costs ~0.1 ms to start; on loopback a small GET ~0.25 ms). After
    an error no further item is started; the first error is raised once the running ones have
    finished (nothing is left running in the background). When the calling thread is
    interrupted (Ctrl-C, also while it waits for the others), ``stopped`` is set, which ``fn``'s
    transfers watch to end early; the interrupt is raised once every helper has returned."""
    if not items:
        return []
    if len(items) == 1 or workers == 1:
        return [fn(i) for i in items]
    import threading

    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    stopped = stopped or threading.Event()  # the calling thread left early: take no more items
    lock = threading.Lock()
    todo = iter(range(len(items)))

    def work() -> None:
        while True:
            with lock:
                n = None if errors or stopped.is_set() else next(todo, None)
            if n is None:
                return
            try:
                results[n] = fn(items[n])
            except Exception as exc:  # raised by the caller below, after the others stop (a Ctrl-C
                # in the calling thread propagates as it is, once the helpers have returned)
                with lock:
                    errors.append(exc)

    def helper(done: threading.Event) -> None:
        try:
            work()
        finally:
            done.set()

    # Waited for through events, not Thread.join: a Ctrl-C that interrupts join() can mark a
    # thread that still runs as stopped (CPython 3.11's bpo-45274 handling), and it would be left.
    helpers = [threading.Event() for _ in range(min(workers, len(items)) - 1)]
    threads = [threading.Thread(target=helper, args=(done,), name="theoryx-remote", daemon=True) for done in helpers]
    for t in threads:
        t.start()
    interrupted: BaseException | None = None
    try:
        work()
    except BaseException as exc:    # KeyboardInterrupt, SystemExit: the helpers stop first
        interrupted = exc
        stopped.set()
    for done in helpers:
        while not done.is_set():
            try:
                done.wait()
            except BaseException as exc:   # a Ctrl-C while waiting: cancel the helpers' transfers
                interrupted = interrupted or exc
                stopped.set()
    try:
        for t in threads:       # each has returned from its work: only its exit is left
            t.join(1)
    except BaseException as exc:
        interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
    if errors:
        raise errors[0]
    return results


# -- write --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """What :func:`publish` did: blobs uploaded (and their bytes), blobs already there, and the
    entry's path on the remote."""

    memo_key: str
    uploaded: int
    uploaded_bytes: int
    present: int
    entry_path: str


def publish(stores: Stores, entry: ActionResult, config: RemoteConfig, *, receipt_cid: str | None,
            strict: bool = False, warn: notices.Warn = notices.each) -> Published | None:
    """Share ``entry`` (a successful execution's action cache entry, with the cid of that
    execution's receipt) on the remote, if this client may upload (``upload`` and a signing
    key): every blob missing there first, then the signed entry. None when not allowed or when
    the remote failed (one warning notice); ``strict`` raises :class:`RemoteError` instead."""
    if not config.upload:
        if strict:
            from theoryx.errors import RemoteConfigError

            raise RemoteConfigError(f"uploads are not enabled for {config.url} (\"upload\": true in remote.json)")
        return None
    if (_is_down(config, "write") or _is_down(config, "read")) and not strict:
        return None
    try:
        return _publish(stores, entry, config, receipt_cid)
    except TheoryxError as exc:
        if strict:
            raise
        if isinstance(exc, RemoteError) and not isinstance(exc, RemoteRejected):
            _mark_down(config, "write")   # lookups go on: the server may refuse this writer only
        warn("results not shared with the team cache", f"result not shared with the team cache: {exc.message}")
        return None
    except Exception as exc:  # a successful run stays successful
        if strict:
            raise
        warn("results not shared with the team cache", f"result not shared with the team cache: {_unexpected(exc)}")
        return None


def signing_key(config: RemoteConfig) -> Ed25519PrivateKey:
    """The key that signs this client's entries; :class:`RemoteConfigError` if none is usable."""
    from theoryx.errors import RemoteConfigError, SigningKeyError
    from theoryx.provenance import keys

    if config.signing_key is None:
        raise RemoteConfigError("upload is enabled but no signing key is configured (signing_key in "
                                "remote.json, or `theoryx keygen`)")
    try:
        return keys.load_private(config.signing_key)
    except SigningKeyError as exc:
        raise RemoteConfigError(f"signing key: {exc.message}") from None


def _publish(stores: Stores, entry: ActionResult, config: RemoteConfig, receipt_cid: str | None) -> Published:
    from theoryx.provenance import dsse

    key = signing_key(config)
    receipt = _json(stores.cas.read(receipt_cid)) if receipt_cid else None
    sizes: dict[str, int] = {}
    for cid in layout.decode(layout.encode(entry, receipt_cid, receipt), entry.memo_key).blobs():
        blob = stores.cas.stat(cid)
        if blob is None:
            raise RemoteRejected(f"blob {cid} of the entry is not in the local store; nothing uploaded")
        sizes[cid] = blob.size
    # The smallest blobs also travel inside the entry (read, so checked against their cids).
    inline = {cid: stores.cas.read(cid) for cid in layout.inline_choice(sizes)}
    data = layout.encode(entry, receipt_cid, receipt, inline)
    layout.decode(data, entry.memo_key)  # what a reader will check, checked here first
    remote = store_for(config)

    uploaded: list[int] = []
    count_lock = _thread.allocate_lock()  # `threading` is imported by the transfers that start threads

    def one(cid: str) -> None:
        path = layout.blob_path(cid)
        if remote.size(path) == sizes[cid]:
            return
        n = remote.upload(path, stores.cas, cid)
        with count_lock:
            uploaded.append(n)
            first = len(uploaded) == 1
        if first:
            syncpoints.point("remote_uploading")

    _parallel(config.concurrency, list(sizes), one)
    syncpoints.point("remote_before_entry")
    envelope = dsse.sign(data, layout.PAYLOAD_TYPE, key)
    path = layout.entry_path(entry.memo_key)
    import json

    remote.put_small(path, (json.dumps(envelope.to_json(), indent=1) + "\n").encode())
    return Published(entry.memo_key, len(uploaded), sum(uploaded), len(sizes) - len(uploaded), path)


def publishable(stores: Stores, execution_ids: Iterable[str] | None) -> list[tuple[ActionResult, str | None]]:
    """``(entry, receipt cid)`` for ``theoryx remote push``: the cache entries that the named
    executions produced (every entry produced here when ``execution_ids`` is None). Entries whose
    producing execution is not recorded in this home (fetched from the remote) are left out."""
    from theoryx.errors import NotFound
    from theoryx.store import executions

    out: list[tuple[ActionResult, str | None]] = []
    if execution_ids is None:
        for entry in action_cache.entries(stores.db):
            rec = executions.find(stores.db, entry.execution_id)
            if rec is not None and rec.status == "success" and rec.receipt_cid:
                out.append((entry, rec.receipt_cid))
        return out
    for eid in execution_ids:
        rec = executions.get(stores.db, eid)
        if rec.status != "success" or not rec.memo_key:
            raise NotFound(f"execution {rec.execution_id} did not succeed: it produced no cache entry")
        found = action_cache.get(stores.db, rec.memo_key)
        if found is None or found.execution_id != rec.execution_id:
            source = rec.source_execution if rec.cache not in ("miss", "bypass") else None
            hint = f" (it answered from execution {source}; push that one)" if source else ""
            raise NotFound(f"execution {rec.execution_id} is not the producer of a cache entry{hint}")
        out.append((found, rec.receipt_cid))
    return out
