"""What a successful run returns: :class:`RunResult`, and :class:`Output` to read its outputs.

Every read is checked against the output's cid: ``bytes``/``text``/``json`` hash what they
return, ``open`` hashes while streaming (a corrupt blob raises at the end of the stream), and
``local_path`` rehashes the blob before handing out its path in the store.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cas import CasError, Store
from theoryx.errors import NotFound, OutputFormatError, StoreError
from theoryx.store import receipts
from theoryx.store.action_cache import OutputEntry
from theoryx.store.executions import ExecutionRecord
from theoryx.store.handle import store_error

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, TypeVar
    T = TypeVar("T")


@dataclass(frozen=True)
class Output:
    """One output of a run: its world ``path``, ``cid``, ``size`` and ``mime``, and its bytes."""

    entry: OutputEntry
    name: str                                   # the path below the run's write prefix
    cas: Store = field(repr=False, compare=False)

    @property
    def path(self) -> str:
        return self.entry.path

    @property
    def cid(self) -> str:
        return self.entry.cid

    @property
    def size(self) -> int:
        return self.entry.size

    @property
    def mime(self) -> str:
        return self.entry.mime

    def bytes(self) -> bytes:
        """All of it, checked against the cid (for small outputs; stream large ones)."""
        return _checked(self, lambda: self.cas.read(self.cid))

    def text(self, encoding: str = "utf-8") -> str:
        """All of it decoded; :class:`~theoryx.errors.OutputFormatError` (a ``ValueError``) when
        it is not text in ``encoding``, or ``encoding`` is no codec."""
        data = self.bytes()
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise OutputFormatError(f"output {self.path} is not {encoding} text: byte {data[exc.start]:#04x} at "
                                    f"offset {exc.start} ({exc.reason}); read it with .bytes()") from None
        except LookupError:
            raise OutputFormatError(f"no text encoding is called {encoding!r}") from None

    def json(self) -> Any:
        """All of it parsed as JSON; :class:`~theoryx.errors.OutputFormatError` (a ``ValueError``)
        when it is not JSON."""
        try:
            return json.loads(self.bytes())
        except ValueError as exc:       # not UTF-8 text, or not JSON (JSONDecodeError)
            raise OutputFormatError(f"output {self.path} is not JSON: {exc}") from None
        except RecursionError:
            raise OutputFormatError(f"output {self.path} is JSON nested too deep to parse") from None

    def open(self) -> BinaryIO:
        """A binary stream; reading it to the end raises :class:`~theoryx.errors.CorruptBlobError`
        (and quarantines the blob) if its bytes do not match the cid. Use as a context manager."""
        raw = _checked(self, lambda: self.cas.open_verified(self.cid))
        return _MappedReader(raw, self)  # type: ignore[return-value]

    def local_path(self) -> Path:
        """The blob's read-only file in the store, after rehashing it (a corrupt blob is
        quarantined and raises): for large outputs a program wants to read by path. Never write
        to it."""
        _checked(self, lambda: self.cas.check(self.cid))
        return self.cas.path(self.cid)


def _checked(out: Output, read: Callable[[], T]) -> T:
    try:
        return read()
    except CasError as exc:
        raise store_error(exc, f"output {out.path}") from None


class _MappedReader(io.BufferedIOBase):
    """A verified stream whose :class:`cas.CorruptBlob` at the end becomes the theoryx error."""

    def __init__(self, raw: BinaryIO, out: Output) -> None:
        super().__init__()
        self._raw, self._out = raw, out

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return _checked(self._out, lambda: self._raw.read(-1 if size is None else size))

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")     # any writable buffer, counted in bytes
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


@dataclass(frozen=True)
class RunResult:
    """A successful run. ``cache`` is "hit", "remote" (a hit just fetched from the team cache:
    the record says "hit" and names ``remote_url``), "miss", or "bypass" (executed without looking
    the cache up: ``no_cache``); ``record`` is the execution record."""

    execution_id: str
    ref: str
    adapter: str
    cache: str
    memo_key: str
    outputs: tuple[OutputEntry, ...]
    env_fingerprint: str
    duration_ms: int
    record: ExecutionRecord
    cas: Store | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, rec: ExecutionRecord, cas: Store | None = None) -> RunResult:
        cache = "remote" if rec.remote_url and rec.cache == "hit" else rec.cache or "miss"
        return cls(rec.execution_id, rec.ref, rec.adapter, cache, rec.memo_key or "",
                   rec.outputs, rec.env_fingerprint or "", rec.duration_ms, rec, cas)

    @property
    def index_path(self) -> str:
        return receipts.index_path(self.execution_id)

    @property
    def receipt_path(self) -> str:
        return receipts.receipt_path(self.execution_id)

    @property
    def write_prefix(self) -> str:
        return self.record.write_prefix or ""

    def names(self) -> list[str]:
        """The outputs' paths below the write prefix, in manifest order."""
        return [self._name(o) for o in self.outputs]

    def output(self, name: str) -> Output:
        """The output at ``name`` below the write prefix (``"reply.json"``), or at its full world
        path. :class:`NotFound` names the outputs there are."""
        if self.cas is None:
            raise StoreError("this result is not attached to a store (construct it through a Session)")
        for o in self.outputs:
            if name in (o.path, self._name(o)):
                return Output(o, self._name(o), self.cas)
        have = ", ".join(self.names()) or "none"
        raise NotFound(f"run {self.execution_id} has no output {name!r} (outputs: {have})")

    def _name(self, o: OutputEntry) -> str:
        prefix = self.write_prefix
        return o.path[len(prefix):] if prefix and o.path.startswith(prefix) else o.path.lstrip("/")

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {
            "status": "success",
            "execution_id": self.execution_id,
            "ref": self.ref,
            "adapter": self.adapter,
            "cache": self.cache,
            "memo_key": self.memo_key,
            "outputs": [o.to_dict() for o in self.outputs],
            "index_path": self.index_path,
            "receipt_path": self.receipt_path,
            "meta": {"env_fingerprint": self.env_fingerprint, "duration_ms": self.duration_ms},
            "plan": self.record.plan, "cost_micros": self.record.cost_micros,
            "saved_micros": self.record.saved_micros, "overrun_micros": self.record.overrun_micros,
        }
