"""The one LMDB environment of a theoryx home (``db-v1``) and its named databases.

Contract:
- at most one open environment per path per process, reopened after ``fork()``;
- ``map_size`` is explicit and doubles on ``MapFullError`` (the write is retried);
- a map another process grew past this one's (``MapResizedError`` when a transaction begins: a
  long-lived process beside writers) is adopted with ``set_mapsize(0)`` and the transaction begun
  again, for every transaction; the adoption waits until no other thread of the process is inside
  one of this database's transactions (it replaces the memory map under them);
- values are msgpack; keys are UTF-8 strings;
- ``write(fn)`` runs ``fn(txn)`` in ONE write transaction (LMDB serialises writers across
  processes), so read-check-write sequences in ``fn`` are atomic.

Every named database (table) has exactly one owner module, and only the owner names the table
(``db.dbs["ac"]``, ``db.get("ac", ...)`` and so on); everybody else calls the owner's functions,
which take the caller's transaction where the caller needs one (gc's read-compare-delete):

================  ===========================================  ===============================
table             owner                                        holds
================  ===========================================  ===============================
``ac``            :mod:`theoryx.store.action_cache`            memo key -> action result
``executions``    :mod:`theoryx.store.executions`              execution id -> record
``paths``         :mod:`theoryx.store.executions`              world path -> newest producer
``specs``         :mod:`theoryx.spec.registry`                 parsed-spec cache
``plans``         :mod:`theoryx.budget.plans`                  plan key -> plan and totals
``reservations``  :mod:`theoryx.budget.plans`                  execution id -> open reservation
``ledger``        :mod:`theoryx.budget.ledger`                 ``<plan>/<seq>`` -> event
``pins``          :mod:`theoryx.store.pins`                    execution id -> pin
``audits``        :mod:`theoryx.provenance.audit_records`      ``<execution>/<audit>`` -> record
``counters``      :mod:`theoryx.store.executions`              counts and sums over the records
================  ===========================================  ===============================

:data:`OWNERS` is that table in code; ``tests/test_table_ownership.py`` enforces it.
"""

from __future__ import annotations

import _thread
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lmdb
import msgpack

from theoryx.errors import StoreError, StoreFull

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any, TypeVar
    T = TypeVar("T")


NAMES = ("ac", "executions", "paths", "specs", "plans", "ledger", "reservations", "pins", "audits", "counters")
OWNERS: dict[str, str] = {
    "ac": "theoryx.store.action_cache",
    "executions": "theoryx.store.executions",
    "paths": "theoryx.store.executions",
    "counters": "theoryx.store.executions",
    "specs": "theoryx.spec.registry",
    "plans": "theoryx.budget.plans",
    "reservations": "theoryx.budget.plans",
    "ledger": "theoryx.budget.ledger",
    "pins": "theoryx.store.pins",
    "audits": "theoryx.provenance.audit_records",
}
"""table -> the one module that may name it (see the module docstring)."""
INITIAL_MAP_SIZE = 1 << 30
MAX_DBS = 16
LOW_SPACE = 1 << 20
"""A commit that fails with an I/O error where at most this much space is left failed for want of
space: LMDB reports a short ``pwrite`` on a full disk as ``EIO``."""
RESIZE_WAIT_S = 10.0
"""How long adopting a grown map waits for the process's other transactions to end; then it
adopts it anyway (those transactions then fail: LMDB invalidates them)."""

_OPEN: dict[str, tuple[int, Database]] = {}


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


class Database:
    """Named databases inside one LMDB environment. Obtain through :func:`open_db`."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._env = lmdb.open(
                os.fsencode(path), map_size=INITIAL_MAP_SIZE, max_dbs=MAX_DBS, subdir=True, max_readers=512
            )
        except lmdb.Error as exc:
            forked = f" (opened before this process forked: {FORK_HINT})" if "already open" in str(exc) else ""
            raise StoreError(f"cannot open the database at {path}: {exc}{forked}") from exc
        self._pid = os.getpid()
        self.path = path
        self._mutex = _thread.allocate_lock()   # guards _active and _resizing (never held while waiting)
        self._active = 0                        # transactions of this process open on the environment
        self._resizing = False                  # a map change is waiting for them to end: none begins
        self.dbs = {name: self.env.open_db(name.encode()) for name in NAMES}

    @property
    def env(self) -> lmdb.Environment:
        """The LMDB environment; :class:`StoreError` in a child forked after it was opened (an
        environment must not cross fork(): the child's transactions would take the parent's
        reader slots, and LMDB refuses to open the same path twice in one process image)."""
        if os.getpid() != self._pid:
            raise StoreError(f"the theoryx home database {self.path} was opened before this process forked: "
                             + FORK_HINT)
        return self._env

    def begin(self, *, write: bool = False, db: Any = None) -> _Txn:
        """A transaction, as a context manager (committed when the block ends normally, aborted
        otherwise). A map another process grew past this one's is adopted first (see the module
        docstring)."""
        env = self.env
        while True:
            self._enter()
            try:       # outside the mutex: a write begin may wait for another process's writer
                txn = env.begin(write=write, db=db)
            except lmdb.MapResizedError:
                self._ended()
                self._resize(env, 0)
                continue
            except BaseException:
                self._ended()
                raise
            return _Txn(self, txn)

    def _enter(self) -> None:
        """Count a transaction about to begin; wait while a map change is pending."""
        while True:
            with self._mutex:
                if not self._resizing:
                    self._active += 1
                    return
            time.sleep(0.001)

    def _resize(self, env: lmdb.Environment, size: int, *, full: int | None = None) -> None:
        """``set_mapsize(size)`` (0: adopt the size another process grew the map to) once no other
        transaction of this process is open — it replaces the memory map they read through —, or
        after :data:`RESIZE_WAIT_S` anyway; no transaction begins meanwhile. With ``full`` (the
        size found full), only if the map is still that size: another thread may have grown it."""
        while True:
            with self._mutex:
                if not self._resizing:
                    self._resizing = True
                    break
            time.sleep(0.001)
        try:
            deadline = time.monotonic() + RESIZE_WAIT_S
            while True:
                with self._mutex:
                    if self._active == 0 or time.monotonic() > deadline:
                        break
                time.sleep(0.001)
            if full is None or env.info()["map_size"] <= full:
                env.set_mapsize(size)
        finally:
            with self._mutex:
                self._resizing = False

    def commit_failed(self, exc: lmdb.Error) -> StoreError:
        """The error for a commit LMDB refused: :class:`StoreFull` when the database's filesystem
        has (almost) no space left (a full disk shows as ``ENOSPC``, or as ``EIO`` from a short
        write), else :class:`StoreError` naming the database. Nothing of the transaction was
        committed."""
        free = free_bytes(self.path)
        text = str(exc)
        if "No space left" in text or "quota" in text or (free is not None and free <= LOW_SPACE):
            left = f" ({free} bytes free)" if free is not None else ""
            return StoreFull(f"no space left on the device holding the theoryx database {self.path}{left}: "
                             f"free space or point THEORYX_HOME elsewhere, then run again ({text}; nothing "
                             "of the transaction was written)")
        return StoreError(f"the theoryx database {self.path} could not be written: {text} (nothing of the "
                          "transaction was written; `theoryx verify` checks the home)")

    def _ended(self) -> None:
        with self._mutex:
            self._active -= 1

    def get(self, name: str, key: str) -> Any | None:
        """The unpacked value under ``key`` in database ``name``, or None (also for the empty
        key, which LMDB cannot hold, and for a key that is not UTF-8 text, e.g. an argument's
        undecodable bytes, which no key written can be: a user's such id or path is simply not
        found)."""
        raw_key = _key(key)
        if raw_key is None:
            return None
        with self.begin(db=self.dbs[name]) as txn:
            raw = txn.get(raw_key)
        return None if raw is None else unpack(raw)

    def put(self, name: str, key: str, value: Any) -> None:
        def fn(txn: lmdb.Transaction) -> None:
            txn.put(key.encode(), pack(value), db=self.dbs[name])

        self.write(fn)

    def delete(self, name: str, key: str) -> bool:
        raw_key = _key(key)
        if raw_key is None:
            return False
        return self.write(lambda txn: bool(txn.delete(raw_key, db=self.dbs[name])))

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction; grow the map and retry when it is full."""
        while True:
            try:
                with self.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                size = int(self.env.info()["map_size"])
                self._resize(self.env, size * 2, full=size)

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        with self.begin() as txn:
            return fn(txn)

    def items(self, name: str, *, reverse: bool = False, prefix: str = "",
              limit: int | None = None) -> Iterator[tuple[str, Any]]:
        """Key order iteration (keys are bytes-ordered); materialised per call, safe to write after.
        With ``limit``, at most that many entries are read."""
        out: list[tuple[str, Any]] = []
        if prefix and _key(prefix) is None:     # not UTF-8 text: no key written starts with it
            return iter(out)
        with self.begin(db=self.dbs[name]) as txn:
            cur = txn.cursor()
            pre = prefix.encode()
            if reverse:
                if pre:
                    end = pre + b"\xff"
                    found = cur.set_range(end)
                    ok = cur.prev() if found else cur.last()
                else:
                    ok = cur.last()
                while ok and (limit is None or len(out) < limit):
                    k = bytes(cur.key())
                    if not k.startswith(pre):
                        break
                    out.append((k.decode(), unpack(cur.value())))
                    ok = cur.prev()
            else:
                ok = cur.set_range(pre) if pre else cur.first()
                while ok and (limit is None or len(out) < limit):
                    k = bytes(cur.key())
                    if not k.startswith(pre):
                        break
                    out.append((k.decode(), unpack(cur.value())))
                    ok = cur.next()
        return iter(out)

    def count(self, name: str) -> int:
        with self.begin(db=self.dbs[name]) as txn:
            return int(txn.stat(self.dbs[name])["entries"])


def _key(key: str) -> bytes | None:
    """``key`` as LMDB key bytes; None when no stored key can be it (empty, or not UTF-8 text:
    the lone surrogates an argument's undecodable bytes become)."""
    if not key:
        return None
    try:
        return key.encode()
    except UnicodeEncodeError:
        return None


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem; None if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class _Txn:
    """An open transaction of a :class:`Database`, counted while it is open."""

    __slots__ = ("_db", "txn")

    def __init__(self, db: Database, txn: lmdb.Transaction[bytes]) -> None:
        self._db, self.txn = db, txn

    def __enter__(self) -> lmdb.Transaction[bytes]:
        return self.txn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None:
                try:
                    self.txn.commit()
                except lmdb.MapFullError:
                    raise
                except lmdb.Error as failed:
                    raise self._db.commit_failed(failed) from failed
            else:
                self.txn.abort()
        finally:
            self._db._ended()


FORK_HINT = ("start worker processes with multiprocessing's 'spawn' (or 'forkserver') method, or open the "
             "home only in the children")


def open_db(path: Path) -> Database:
    """The process's environment for ``path`` (opened once per process). A child forked after
    the parent opened it cannot use it, nor open it again: :class:`StoreError` saying so."""
    key = str(path.resolve())
    pid = os.getpid()
    hit = _OPEN.get(key)
    if hit is not None and hit[0] == pid:
        return hit[1]
    db = Database(path)
    _OPEN[key] = (pid, db)
    return db


def close_all() -> None:
    """Close every environment this process opened (tests; before exec)."""
    for pid, db in list(_OPEN.values()):
        if pid == os.getpid():
            db._env.close()
    _OPEN.clear()
