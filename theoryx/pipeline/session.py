"""The one door: a :class:`Session` opens a home once and serves many runs.

    with theoryx.Session(home="~/.cache/theoryx") as s:
        result = s.run("llm/litellm@1", inputs={"messages": [...]}, adapter="mock")
        reply = result.output("reply.json").json()

``theoryx.run(...)`` is a one-shot convenience over it; the CLI (``theoryx run``, its click-free
fast path) and ``theoryx audit`` go through the same door.

A run flows (ARCHITECTURE.md, "The run pipeline")::

    request -> prepare -> look up -> hit  -> record
                                 \\-> miss -> record

and every run leaves an execution record, successful or not. A session may be used from several
threads at once: each run has its own state, and the store and database are safe to share.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from cas import CasError
from theoryx.core import syncpoints
from theoryx.core.ids import new_execution_id
from theoryx.errors import InternalError, RunInterrupted, StoreError, StoreFull, TheoryxError, UsageError
from theoryx.pipeline import hit, record, writeprefix
from theoryx.pipeline.lookup import lookup
from theoryx.pipeline.prepare import Prepared, Resolutions, check_seed, prepare, processor
from theoryx.pipeline.request import DEFAULT_ADAPTER, RunRequest, StreamFn, path_arg
from theoryx.pipeline.result import Output, RunResult
from theoryx.pipeline.running import RunState
from theoryx.store import receipts
from theoryx.store.handle import Stores, open_stores, store_error
from theoryx.store.home import home_error
from theoryx.store.leases import Lease

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)

if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

    from theoryx.pipeline.batch import Batch, BatchScope, Item, ItemResult


class Session:
    """A theoryx home, opened once (``home``: a path, as a string or a Path; default
    ``THEORYX_HOME``, else ``$XDG_CACHE_HOME/theoryx``, else ``~/.cache/theoryx``).
    ``registry`` (a path, as a string or a Path) is the default for runs that name none. Any
    other value for either is a :class:`UsageError` and opens nothing."""

    def __init__(self, home: str | Path | None = None, *, registry: str | Path | None = None,
                 stores: Stores | None = None) -> None:
        registry = path_arg("registry", registry)
        self.stores = stores if stores is not None else open_stores(path_arg("home", home))
        self.registry = registry

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release today (the database environment is shared per process); kept so
        that sessions are used as context managers and may hold resources later."""

    def run(
        self,
        ref: str,
        *,
        inputs: Any = None,
        attachments: Mapping[str, str | Path] | None = None,
        adapter: str = DEFAULT_ADAPTER,
        plan: str | None = None,
        write_prefix: str = writeprefix.DEFAULT,
        seed: int = 0,
        salt: str = "",
        no_cache: bool = False,
        adapter_options: Mapping[str, Any] | None = None,
        registry: str | None = None,
        stream: StreamFn | None = None,
        build: bool = False,
        remote: str | None = None,
    ) -> RunResult:
        """Run processor ``ref`` (``ns/name@version``) and return its result. ``remote`` is a
        team cache URL (default ``THEORYX_REMOTE``, else ``<home>/remote.json``).

        Raises a :class:`theoryx.errors.TheoryxError` subclass with a stable ``code`` and the
        ``execution_id`` of the failed execution.
        """
        return self.submit(RunRequest.of(
            ref, inputs=inputs, attachments=attachments, adapter=adapter, plan=plan,
            write_prefix=write_prefix, seed=seed, salt=salt, no_cache=no_cache,
            adapter_options=adapter_options, registry=registry, stream=stream, build=build, remote=remote,
        ))

    def submit(self, req: RunRequest, *, scope: BatchScope | None = None) -> RunResult:
        """Run a request: prepare, look up, then answer the hit or execute the miss; record.
        ``scope`` is what the runs of one batch share: resolved specs and image identities, one
        lease, and a recorder that commits hit records in groups."""
        begun = self.begin(req, scope=scope)
        return begun if isinstance(begun, RunResult) else begun.finish()

    def begin(self, req: RunRequest, *, scope: BatchScope | None = None) -> RunResult | Pending:
        """The first half of :meth:`submit`: prepare the request and look it up in the local
        action cache. A hit is answered and recorded at once; anything else comes back as a
        :class:`Pending` run whose :meth:`Pending.finish` continues from the prepared request (the
        team cache, the flight, the miss). A batch calls this on its own thread and hands only
        pending runs to its pool, so a cached item never waits for a thread. A failure is
        recorded and raised, as by :meth:`submit`."""
        req = self._defaults(req)
        check_seed(req.seed)    # before a record exists: one could not even store such a seed
        if scope is None:
            run = RunState.start(self.stores, req)
        else:
            run = RunState.start(self.stores, req, lease=scope.lease, recorder=scope.recorder,
                                 warn=scope.warnings.warning)
        resolutions = scope.resolutions if scope is not None else None
        try:
            begun = _guarded(run, lambda: _begin(run, resolutions))
        except BaseException:
            run.close()
            raise
        if isinstance(begun, RunResult):
            run.close()
            return begun
        return Pending(run, begun)

    def map(
        self,
        ref: str,
        items: Iterable[Item | Mapping[str, Any] | None],
        *,
        jobs: int | None = None,
        ordered: bool = True,
        fail_fast: bool = False,
        batch: list[Batch] | None = None,
        **options: Any,
    ) -> Generator[ItemResult, None, None]:
        """Run ``ref`` once per item and yield an :class:`ItemResult` per item, in input order
        (``ordered=False``: as they finish). ``items`` are :class:`Item` values or mappings
        ``{"inputs": ..., "attachments": {name: path}, "id": label}``, read lazily (a source that
        has nothing yet may yield None: finished items are reported meanwhile). ``options``
        are :meth:`run`'s keywords, applied to every item (``inputs`` and ``attachments`` are
        each item's own, not options: :class:`UsageError`); ``jobs`` items run at once (default:
        the number of CPUs). Failures are results, not exceptions; ``fail_fast`` stops at the
        first. ``batch``, if given, receives the :class:`Batch` so a caller can ``cancel()`` it.
        """
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            # not iterable: a TypeError at the first next(); one mapping or a string: every key
            # or character an item failing on its own
            raise UsageError(f"items must be an iterable of items (mappings {{'inputs': ...}}), got "
                             f"{type(items).__name__} {str(items)[:40]!r}")
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise UsageError(f"jobs must be a positive integer (or None: the number of CPUs), got {jobs!r}")
        for name, flag in (("ordered", ordered), ("fail_fast", fail_fast)):
            if not isinstance(flag, bool):
                raise UsageError(f"{name} must be True or False, got {type(flag).__name__} {str(flag)[:40]!r}")
        if batch is not None and not isinstance(batch, list):
            raise UsageError(f"batch must be a list (it receives the Batch), got {type(batch).__name__}")
        per_item = sorted({"inputs", "attachments"} & set(options))
        if per_item:    # each item's own: as options they would be replaced by every item's, unseen
            raise UsageError(f"map() takes {' and '.join(per_item)} from each item "
                             "({'inputs': ..., 'attachments': ...}), not as options for all items")
        template = self._defaults(RunRequest.of(ref, **options))
        from theoryx import adapters
        from theoryx.pipeline.batch import Batch, BatchScope  # batches only: a single hit stays lean
        from theoryx.pipeline.recorder import GroupRecorder

        resolutions = Resolutions()
        processor(self.stores, template, resolutions)   # a mistake every item shares fails here, once
        scope = BatchScope(resolutions, lambda: Lease(self.stores.home.leases, new_execution_id()),
                           GroupRecorder(self.stores.db), work=self.stores.home.work)
        jobs = jobs or os.cpu_count() or 1
        # Persistent workers (specs that declare `worker`, on local): created idle, closed with the batch.
        workers = adapters.workers(template.adapter, stores=self.stores, jobs=jobs) \
            if template.adapter in adapters.NAMES else None
        template = replace(template, workers=workers)

        def close() -> None:
            try:
                if workers is not None:
                    workers.close()
            finally:
                scope.close()

        runner = Batch(lambda req: self.begin(req, scope=scope), template,
                       jobs=jobs if workers is None else workers.in_flight,
                       ordered=ordered, fail_fast=fail_fast, tick=scope.recorder.flush_if_due, on_close=close)
        if batch is not None:
            batch.append(runner)
        return runner.run(items)

    def replay(self, req: RunRequest, prep: Prepared) -> RunResult:
        """Execute an already prepared action again, bypassing the cache and leaving both the
        cache entry and what world paths resolve to unchanged (``theoryx audit``)."""
        req = self._defaults(req)
        run = RunState.start(self.stores, req, record_paths=False)
        try:
            return _guarded(run, lambda: _execute(run, prep, cache_write=False))
        finally:
            run.close()

    @contextmanager
    def holding(self, result: RunResult) -> Iterator[RunResult]:
        """Lease ``result``'s outputs while the block reads them: a concurrent gc keeps them (and
        one it withdrew a moment before the lease is put back), as during the run itself."""
        if not isinstance(result, RunResult):
            raise UsageError(f"holding() takes a RunResult, got {type(result).__name__} {str(result)[:40]!r}")
        with Lease(self.stores.home.leases, new_execution_id()) as lease:
            cids = [o.cid for o in result.outputs]
            lease.add(cids)
            for cid in cids:
                if not self.stores.cas.exists(cid):
                    self.stores.cas.reinstate(cid)
            yield result

    def output(self, where: str) -> Output:
        """An output by world path (``/artifacts/outputs/...``, the newest producer's) or by cid."""
        from theoryx.pipeline.attachments import guess_mime
        from theoryx.store import worldpaths
        from theoryx.store.action_cache import OutputEntry

        if not isinstance(where, str):
            raise UsageError(f"output() takes a world path or a cid (a string), got {type(where).__name__} "
                             f"{str(where)[:40]!r}")
        cid = worldpaths.resolve(self.stores, where)
        blob = self.stores.cas.stat(cid)
        name = where.rsplit("/", 1)[-1]
        entry = OutputEntry(where, cid, blob.size if blob else 0, guess_mime(name))
        return Output(entry, name, self.stores.cas)

    def _defaults(self, req: RunRequest) -> RunRequest:
        return replace(req, registry=self.registry) if req.registry is None and self.registry else req


_FULL = (errno.ENOSPC, errno.EDQUOT)


def store_full(exc: BaseException, home: Path | None = None) -> StoreFull | None:
    """:class:`StoreFull` if ``exc`` (or an exception it was raised from) is a full disk or an
    exhausted quota, naming the path and the space left there (an error that names no file: the
    space left in ``home``, the theoryx home, when given); else None."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, StoreFull):
            return cause
        full = isinstance(cause, OSError) and cause.errno in _FULL
        if full or "No space left on device" in str(cause) or "Disk quota exceeded" in str(cause):
            where = getattr(cause, "filename", None) or (str(home) if home is not None else "")
            return StoreFull(f"no space left on the device{' holding ' + str(where) if where else ''}"
                             f"{_free(str(where))}: free space or point THEORYX_HOME elsewhere, then run again "
                             "(what was being written was removed)")
        cause = cause.__cause__ or cause.__context__
    return None


def _free(where: str) -> str:
    """`` (N bytes free)`` on ``where``'s filesystem (its nearest existing parent's); nothing
    when there is no path to measure: the working directory's figure would be about another disk."""
    import shutil

    if not where:
        return ""
    path = Path(where)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return f" ({shutil.disk_usage(path).free} bytes free)"
    except OSError:
        return ""


def run(ref: str, *, home: str | Path | None = None, **options: Any) -> RunResult:
    """One run in a one-shot :class:`Session` over ``home``; ``options`` as :meth:`Session.run`.
    A usage error in them (a value of the wrong type, a seed out of range, a malformed plan key)
    is raised before the home is opened, so it never creates one."""
    req = RunRequest.of(ref, **options)
    check_seed(req.seed)
    if req.plan is not None:
        from theoryx.budget.plans import check_key

        check_key(req.plan)
    with Session(home) as session:
        return session.submit(req)


class Pending:
    """A run prepared and looked up locally without a hit (:meth:`Session.begin`). Call
    :meth:`finish` once, on any thread, to continue it; or :meth:`close` to drop it unfinished
    (a cancelled batch item: nothing executed and nothing is recorded)."""

    __slots__ = ("_run", "prepared")

    def __init__(self, run: RunState, prepared: Prepared) -> None:
        self._run, self.prepared = run, prepared

    @property
    def execution_id(self) -> str:
        return self._run.execution_id

    def finish(self) -> RunResult:
        """The team cache, then the flight and the miss; recorded like :meth:`Session.submit`."""
        run = self._run
        try:
            return _guarded(run, lambda: _finish(run, self.prepared))
        finally:
            run.close()

    def close(self) -> None:
        self._run.close()


def _begin(run: RunState, resolutions: Resolutions | None) -> RunResult | Prepared:
    """Prepare and look up: the hit's answer, or the prepared request a miss continues from."""
    req = run.request
    prep = prepare(run.stores, req, run.execution_id, resolutions, warn=run.warn)
    _adopt(run, prep)
    syncpoints.point("after_prepare")
    if req.no_cache:
        return prep
    found = lookup(run.stores, run.lease, prep.memo_key)
    return prep if found is None else hit.answer(run, found)


def _finish(run: RunState, prep: Prepared) -> RunResult:
    """After a local miss (or with ``no_cache``): the team cache, the flight, the execution."""
    if run.request.no_cache:
        return _shared(run, _execute(run, prep, cache_write=True), _team_cache(run))
    # A local miss asks the team cache, if one is configured (theoryx.remote; imported only
    # here, so a local hit never loads it): a verified remote result is a hit.
    team = _team_cache(run)
    if team is not None:
        from theoryx.remote import cache as remote_cache

        # Verified, its blobs durable and leased: the hit's record commits the entry with it.
        # What this run holds already (its action pre-image, its attachments) is never downloaded.
        local = remote_cache.Local(prep.action.data, prep.sources, prep.spec.limits.log_bytes)
        fetched = remote_cache.fetch(run.stores, prep.memo_key, team, lease=run.lease, commit=False, local=local,
                                     warn=run.warn)
        if fetched is not None:
            return hit.answer(run, fetched, remote_url=team.url)
    # A miss: one flight per memo key. Identical runs wait here for the one executing, then
    # answer from its result; if it failed or died, the next one in line executes.
    from theoryx.store.flights import Flight  # a miss only: a hit never waits for a flight

    with Flight(run.stores.home.root, prep.memo_key):
        syncpoints.point("in_flight")
        found = lookup(run.stores, run.lease, prep.memo_key)
        if found is not None:
            return hit.answer(run, found)
        result = _execute(run, prep, cache_write=True)
    return _shared(run, result, team)


def _team_cache(run: RunState) -> Any:
    """The team cache configured for this run (a ``theoryx.remote.config.RemoteConfig``), or None."""
    from theoryx.remote import cache as remote_cache

    return remote_cache.configured(run.stores.home.root, run.request.remote, warn=run.warn)


def _shared(run: RunState, result: RunResult, team: Any) -> RunResult:
    """Publish a miss's result to the team cache when this client may upload (never fails the run)."""
    if team is not None and team.upload:
        from theoryx.remote import cache as remote_cache
        from theoryx.store import action_cache

        entry = action_cache.get(run.stores.db, result.memo_key)
        if entry is not None and entry.execution_id == result.execution_id:
            remote_cache.publish(run.stores, entry, team, receipt_cid=result.record.receipt_cid, warn=run.warn)
    return result


def _execute(run: RunState, prep: Prepared, *, cache_write: bool) -> RunResult:
    from theoryx.pipeline import miss  # miss-only imports: a hit stays lean

    if run.record.memo_key is None:
        _adopt(run, prep)
    return miss.execute(run, prep, cache_write=cache_write)


def _adopt(run: RunState, prep: Prepared) -> None:
    """Name the prepared action on the record and lease its inputs."""
    run.record = run.record.with_(
        memo_key=prep.memo_key, spec_digest=prep.action.spec_digest, write_prefix=prep.write_prefix,
        env_fingerprint=receipts.env_fingerprint(prep.action.body), input_cids=prep.input_cids,
    )
    run.lease.add(prep.input_cids)


def _guarded(run: RunState, body: Callable[[], T]) -> T:
    """Run ``body``; a failure is recorded and re-raised with the execution id on it. A full
    disk (anywhere in the run) becomes :class:`StoreFull`, a store error :class:`StoreError`;
    any other exception (a bug, a ``stream`` callback that raised) is recorded as
    ``ERR_INTERNAL`` and re-raised as it is."""
    try:
        try:
            return body()
        except TheoryxError:
            raise
        except Exception as exc:
            mapped: StoreError | None = store_full(exc, run.stores.home.root)
            if mapped is None:       # a permission, a read-only mount, a file where a folder belongs
                mapped = home_error(exc, run.stores.home.root)
            if mapped is None and isinstance(exc, CasError):
                mapped = store_error(exc)
            if mapped is None:      # a bug, or the caller's own callback raising: still recorded
                unexpected = InternalError(f"{type(exc).__name__}: {exc}")
                unexpected.execution_id = run.execution_id
                record.failure(run, unexpected)
                try:        # for a batch, which reports it as that item's ERR_INTERNAL
                    exc.theoryx_execution_id = run.execution_id     # type: ignore[attr-defined]
                except AttributeError:      # an exception type with __slots__: no id to report
                    pass
                raise
            raise mapped from exc
    except TheoryxError as exc:
        exc.execution_id = run.execution_id
        record.failure(run, exc)
        raise
    except KeyboardInterrupt as stop:
        interrupted = RunInterrupted("interrupted while the run was in flight; nothing was cached")
        interrupted.execution_id = run.execution_id
        stop.theoryx_error = interrupted     # type: ignore[attr-defined]  # for the CLI's envelope
        record.failure(run, interrupted)
        raise
