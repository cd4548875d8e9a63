"""Many runs of one processor: :meth:`Session.map`'s engine.

Every item is its own action — its own memo key, cache entry, receipt and execution record —
going through the same door as a single run (:meth:`Session.submit`). What a batch adds is
scheduling: ``jobs`` items in flight on a thread pool, a bounded window of submitted items (so a
million-line items file streams in constant memory), results in input order through a bounded
reorder buffer (or as they finish), ``fail_fast``, and cancellation (Ctrl-C: nothing more is
admitted, queued items are dropped, items in flight finish and are recorded).

An unexpected exception in one item (a bug in theoryx, not a typed error) fails that item alone
with ``ERR_INTERNAL``: its :class:`~theoryx.errors.InternalError` carries the original exception
as ``__cause__`` (the CLI writes its traceback to a crash file), and the batch goes on.

Identical items execute once: the second waits on the first's flight and answers as its hit.
Budgets hold with any ``jobs``: each miss is admitted on its own in one LMDB transaction, so the
plan's limit is never overshot; once it is exhausted the remaining misses fail with
``ERR_BUDGET_EXCEEDED`` while hits are still answered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theoryx.adapters.base import CANCELLATION, Cancellation
from theoryx.core.notices import Coalesced
from theoryx.errors import InputsError, InternalError, TheoryxError
from theoryx.pipeline.prepare import Resolutions
from theoryx.pipeline.recorder import GroupRecorder
from theoryx.pipeline.request import RunRequest
from theoryx.pipeline.result import RunResult
from theoryx.store.leases import Lease
from theoryx.store.leftovers import remove_tree

if TYPE_CHECKING:
    from theoryx.pipeline.session import Pending


@dataclass(frozen=True)
class Item:
    """One item of a batch: its inputs and attachments (name -> host path), an optional label,
    and its position (``line``: the items file's line number, or the index from 1). ``error``
    is set for an item that could not even be read (a malformed line): it fails with it."""

    line: int
    inputs: Any = field(default_factory=dict)
    attachments: Mapping[str, Path] = field(default_factory=dict)
    id: str | None = None
    error: TheoryxError | None = None


@dataclass(frozen=True)
class ItemResult:
    """What became of one item: ``result`` on success, else ``error``."""

    item: Item
    result: RunResult | None = None
    error: TheoryxError | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    def to_json(self) -> dict[str, Any]:
        """The item's line: its line number and id, then exactly the ``run --json`` envelope."""
        head: dict[str, Any] = {"line": self.item.line, "id": self.item.id}
        if self.result is not None:
            return {**head, **self.result.to_json()}
        assert self.error is not None
        return {**head, **self.error.envelope()}


def as_item(value: Item | Mapping[str, Any], line: int) -> Item:
    """An :class:`Item` from a mapping ``{"inputs", "attach"/"attachments", "id"}`` (or as is).
    Anything else — not a mapping, attachments that are not a mapping of names to paths — is an
    item that fails with ``ERR_INPUTS`` naming its position (failures are results: the batch
    goes on)."""
    if isinstance(value, Item):
        return value
    if not isinstance(value, Mapping):
        return Item(line=line, error=InputsError(f"item {line}: an item is a mapping with 'inputs' (and "
                                                 f"'attachments', 'id'), not a {type(value).__name__}"))
    attach = value.get("attachments", value.get("attach"))
    attach = {} if attach is None else attach       # null is none; [], "" or 0 are not a mapping
    label = value.get("id")
    try:
        if not isinstance(attach, Mapping):
            raise TypeError(f"not a {type(attach).__name__}")
        bad = next((k for k in attach if not isinstance(k, str) or not k), None)
        if bad is not None:     # as for run(): 1 and "1" are not the same name, quietly made one
            raise TypeError(f"attachment names must be non-empty strings, got {type(bad).__name__} {str(bad)[:40]!r}")
        files = {k: Path(v) for k, v in attach.items()}
    except (TypeError, ValueError) as exc:
        return Item(line=line, error=InputsError(f"item {line}: attachments must map names to file paths ({exc})"))
    return Item(line=line, inputs=value.get("inputs", {}), id=None if label is None else str(label),
                attachments=files)


class BatchScope:
    """What the runs of one batch share: resolved processors, one lease (taken by the first run
    and held until the batch is over, so gc keeps everything the batch touches), the group
    recorder of its hits, and its coalesced warnings (the team cache's: each kind reported once,
    then counted; how many more came is reported when the batch closes)."""

    def __init__(self, resolutions: Resolutions, new_lease: Callable[[], Lease], recorder: GroupRecorder,
                 work: Path | None = None) -> None:
        self.resolutions, self.recorder, self.work = resolutions, recorder, work
        self.warnings = Coalesced()
        self._new_lease = new_lease
        self._lease: Lease | None = None
        self._lock = threading.Lock()

    @property
    def lease(self) -> Lease:
        with self._lock:
            if self._lease is None:
                self._lease = self._new_lease()
            return self._lease

    def close(self) -> None:
        """Report how many coalesced warnings were not shown, commit the last group of hit
        records, remove the batch's workspace directory (``<work>/<lease owner>``, which its
        misses' workspaces were in), then release the lease."""
        self.warnings.close()
        try:
            self.recorder.flush()
        finally:
            with self._lock:
                if self._lease is not None:
                    try:
                        if self.work is not None:
                            remove_tree(self.work / self._lease.owner)   # absent if no item missed
                    finally:
                        self._lease.release()


class Batch:
    """One :meth:`Session.map` call. ``begin`` prepares and looks up one request (the session's
    door, :meth:`Session.begin`): a hit comes back answered, anything else as a
    :class:`~theoryx.pipeline.session.Pending` run that the pool finishes. ``tick`` is called
    while results are awaited, ``on_close`` once the batch is over."""

    def __init__(self, begin: Callable[[RunRequest], RunResult | Pending], template: RunRequest, *, jobs: int,
                 ordered: bool, fail_fast: bool, window: int | None = None,
                 tick: Callable[[], None] | None = None, on_close: Callable[[], None] | None = None) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.begin, self.template, self.jobs = begin, template, jobs
        self.ordered, self.fail_fast = ordered, fail_fast
        self.tick, self.on_close = tick, on_close
        self.window = window or max(4 * jobs, 16)
        self.cancelled = threading.Event()
        self.cancellation = Cancellation()
        # Items that finished (recorded, charged) but were never yielded, because the consumer
        # stopped taking results (closed the iterator: a second Ctrl-C): set when the batch ends.
        self.unreported: list[ItemResult] = []
        self._stop = threading.Event()   # fail_fast and an item failed: pool threads take no new item

    def cancel(self) -> None:
        """Admit nothing more; queued items are dropped; the containers of items in flight are
        stopped (their items fail with ``ERR_CANCELLED``); what finished is recorded. Safe to
        call from a signal handler."""
        self.cancelled.set()
        self.cancellation.cancel()

    def _begin(self, item: Item) -> ItemResult | Pending:
        """On the batch's own thread: an item's result if it is known without executing (a hit,
        or a failure before execution), else its pending run."""
        if item.error is not None:
            return ItemResult(item, error=item.error)
        req = self.template.for_item(item.inputs, dict(item.attachments))
        try:
            begun = self.begin(req)
        except TheoryxError as exc:
            return ItemResult(item, error=exc)
        except Exception as exc:        # a bug: this item fails, the batch goes on
            return ItemResult(item, error=unexpected(exc))
        return ItemResult(item, result=begun) if isinstance(begun, RunResult) else begun

    def _finish(self, item: Item, pending: Pending) -> ItemResult | None:
        """On a pool thread: the team cache, the flight, the miss (which the adapter stops if
        the batch is cancelled meanwhile: :data:`~theoryx.adapters.base.CANCELLATION`). None,
        with nothing executed, when ``fail_fast`` and an item has already failed: a pool thread
        that picks up a queued item after a failure must not pay for it."""
        if self._stop.is_set():
            pending.close()
            return None
        token = CANCELLATION.set(self.cancellation)
        try:
            res = ItemResult(item, result=pending.finish())
        except TheoryxError as exc:
            res = ItemResult(item, error=exc)
        except Exception as exc:        # a bug: this item fails (recorded as ERR_INTERNAL), the batch goes on
            res = ItemResult(item, error=unexpected(exc, pending.execution_id))
        finally:
            CANCELLATION.reset(token)
        if self.fail_fast and not res.ok:
            self._stop.set()
            self.cancellation.drain()       # items waiting for a container or a worker start none
        return res

    def run(self, items: Iterable[Item | Mapping[str, Any] | None]) -> Generator[ItemResult, None, None]:
        """Yield every item's result (in input order unless ``ordered`` is False). Stops early on
        ``fail_fast`` after the first failure, or when cancelled; results of items that finished
        are always yielded.

        Items are prepared and looked up on this thread, in order: hits are answered here, with
        no thread hand-off; only misses go to the pool of ``jobs`` threads. At most ``window``
        items are between admission and being yielded (the reorder buffer and the queue).
        ``items`` may yield None when no item is available yet (a slow pipe): finished misses
        are then reported meanwhile instead of waiting for the next item."""
        source = _numbered(items)
        pool: ThreadPoolExecutor | None = None      # created for the first miss: a batch of hits needs none
        pending: dict[Future[ItemResult | None], tuple[int, Pending]] = {}   # a miss in the pool: seq, run
        done: dict[int, ItemResult] = {}
        next_seq, submitted, exhausted = 0, 0, False
        try:
            while True:
                ready: list[tuple[int, ItemResult]] = []
                stopping = self._stop.is_set() or self.cancelled.is_set()
                if not (exhausted or stopping) and submitted - next_seq < self.window:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        continue
                    if item is None:                 # none available yet: report what finished meanwhile
                        if pending:
                            finished, _ = wait(list(pending), timeout=0.05, return_when=FIRST_COMPLETED)
                            ready += _collect(pending, finished)
                    else:
                        seq, submitted = submitted, submitted + 1
                        begun = self._begin(item)
                        if isinstance(begun, ItemResult):
                            ready.append((seq, begun))
                        else:
                            if pool is None:
                                pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="theoryx-map")
                            pending[pool.submit(self._finish, item, begun)] = (seq, begun)
                        if pending and seq % 8 == 0:     # results of misses as they come, without waiting
                            ready += _collect(pending, [f for f in pending if f.done()])
                elif pending:
                    finished, _ = wait(list(pending), timeout=0.25, return_when=FIRST_COMPLETED)
                    if self.tick is not None:
                        self.tick()
                    ready += _collect(pending, finished)
                else:
                    break
                for seq, res in ready:
                    if self.fail_fast and not res.ok:
                        self._stop.set()
                        self.cancellation.drain()
                    if self.ordered:
                        done[seq] = res
                    else:
                        next_seq += 1
                        yield res
                while self.ordered and next_seq in done:
                    yield done.pop(next_seq)
                    next_seq += 1
                if (self._stop.is_set() or self.cancelled.is_set()) and pending:
                    for fut in list(pending):
                        if fut.cancel():      # still queued: dropped, nothing executed or recorded
                            pending.pop(fut)[1].close()
            if self.ordered:  # after a stop: whatever finished, in order, gaps skipped
                for seq in sorted(done):
                    yield done.pop(seq)
        finally:
            self.cancelled.set()      # not cancel(): a batch that ends lets nothing be stopped
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            late = dict(done)         # a consumer that stopped early never took these
            for fut, (seq, run) in pending.items():
                if fut.cancelled():           # dropped by the shutdown: never started
                    run.close()
                elif fut.exception() is None:
                    outcome = fut.result()
                    if outcome is not None:
                        late[seq] = outcome
            self.unreported = [late[seq] for seq in sorted(late)]
            if self.on_close is not None:
                self.on_close()


def unexpected(exc: Exception, execution_id: str | None = None) -> InternalError:
    """The item's error for an exception theoryx did not raise on purpose: ``ERR_INTERNAL``
    naming it in one line, with ``exc`` as its ``__cause__`` (its traceback) and the execution's
    id when the run had one."""
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:300] if str(exc) else type(exc).__name__
    error = InternalError(f"internal error ({summary})")
    error.__cause__ = exc
    error.execution_id = execution_id or getattr(exc, "theoryx_execution_id", None)
    return error


def _numbered(items: Iterable[Item | Mapping[str, Any] | None]) -> Iterator[Item | None]:
    """``items`` as :class:`Item` values numbered from 1 (a mapping's line); None passes through
    unnumbered: a source that has no item available yet (a pipe whose writer is slow)."""
    n = 0
    for value in items:
        if value is None:
            yield None
            continue
        n += 1
        yield as_item(value, n)


def _collect(pending: dict[Future[ItemResult | None], tuple[int, Pending]],
             finished: Iterable[Future[ItemResult | None]]) -> list[tuple[int, ItemResult]]:
    """The results of ``finished`` futures (removed from ``pending``) with their sequence
    numbers; an item dropped unexecuted after a ``fail_fast`` failure has none and is skipped."""
    out = []
    for fut in finished:
        seq = pending.pop(fut)[0]
        res = fut.result()
        if res is not None:
            out.append((seq, res))
    return out
