"""Reading a blob while checking it: the bytes are hashed as they are read, and the end of the
stream is only reported once they matched the cid."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

from cas.cid import cid_from_hex
from cas.errors import CorruptBlob
from cas.hashing import new_hasher


class VerifiedReader(io.RawIOBase):
    """A raw, read-only stream over ``raw`` (a blob file) that raises :class:`CorruptBlob`
    instead of returning end-of-file when the bytes read from the start do not hash to ``cid``.

    Callers that stop early have checked nothing: only a read to the end is verified. Closing it
    closes ``raw``. ``on_corrupt`` is called once, before :class:`CorruptBlob` is raised (the
    store quarantines the blob there).
    """

    def __init__(self, raw: BinaryIO, cid: str, *, on_corrupt: Callable[[], object] | None = None) -> None:
        super().__init__()
        self._raw, self._cid = raw, cid
        self._on_corrupt = on_corrupt
        self._hasher = new_hasher(threads=False)
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        if data:
            self._hasher.update(data)
            view[: len(data)] = data
            return len(data)
        if len(view) and not self._checked:
            actual = cid_from_hex(self._hasher.hexdigest())
            if actual != self._cid:
                if self._on_corrupt is not None:
                    on_corrupt, self._on_corrupt = self._on_corrupt, None
                    on_corrupt()
                raise CorruptBlob(self._cid, actual)
            self._checked = True
        return 0

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
