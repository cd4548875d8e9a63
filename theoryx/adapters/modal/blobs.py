"""Blobs on a content-addressed Modal Volume: what a Sandbox reads its inputs from.

The Volume (``THEORYX_MODAL_VOLUME``, default :data:`DEFAULT_VOLUME`) holds each blob once, at
``blobs/<2 hex>/<62 hex>`` (the hex of its cid, as in ``cas-v1/blobs``); a path names its content,
so a blob is uploaded once and then serves every run that attaches it, from any host. The
Sandbox mounts the Volume read-only at :data:`CAS_MOUNT` and links
``/artifacts/inputs/<cid>/<name>`` (and ``/theoryx/inputs.json``) to the blobs there.

Before a run, :meth:`BlobVolume.ensure` uploads the blobs the Volume lacks, in one batch. It is
thread-safe and deduplicated across concurrent runs of this process (a batch of runs on a thread
pool): a blob already known present is not looked up again, and a blob another run is uploading
is waited for instead of uploaded twice. Across processes, each checks the Volume first (one
``listdir`` per blob it has not seen) and an upload that races another writes the same bytes at
the same path (``force``), so either order is correct.

The Volume is never collected by ``theoryx gc`` (it is Modal's storage, not the home's): remove it
with ``modal volume delete`` to reclaim it; the next run uploads what it needs again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cas.cid import hex_of

VOLUME_ENV = "THEORYX_MODAL_VOLUME"
DEFAULT_VOLUME = "theoryx-cas"
CAS_MOUNT = "/__theoryx/cas"


@dataclass(frozen=True)
class BlobFile:
    """A blob to make present: its cid, size and a local file holding its bytes."""

    cid: str
    size: int
    path: Path


@dataclass(frozen=True)
class Ensured:
    """What :meth:`BlobVolume.ensure` did: blobs uploaded by this call (and their bytes), blobs
    found present (in the Volume, or already known), blobs uploaded meanwhile by another run."""

    uploaded: int
    uploaded_bytes: int
    present: int
    waited: int


def volume_name() -> str:
    """The Volume's name: ``$THEORYX_MODAL_VOLUME``, else :data:`DEFAULT_VOLUME`."""
    return os.environ.get(VOLUME_ENV) or DEFAULT_VOLUME


def blob_path(cid: str) -> str:
    """Where blob ``cid`` lives in the Volume (relative to its root)."""
    h = hex_of(cid)
    return f"blobs/{h[:2]}/{h[2:]}"


def mounted(cid: str) -> str:
    """The path of blob ``cid`` inside a Sandbox that mounts the Volume at :data:`CAS_MOUNT`."""
    return f"{CAS_MOUNT}/{blob_path(cid)}"


class BlobVolume:
    """The blobs of one Volume as this process knows them; one instance per Volume name
    (:meth:`named`). ``size_of(path)`` and ``upload(pairs)`` are the two Volume operations
    (:func:`theoryx.adapters.modal.boundary.blob_size` and ``upload`` over the real Volume)."""

    _instances: ClassVar[dict[str, BlobVolume]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._present: set[str] = set()
        self._inflight: dict[str, threading.Event] = {}

    @classmethod
    def named(cls, name: str) -> BlobVolume:
        with cls._instances_lock:
            found = cls._instances.get(name)
            if found is None:
                found = cls._instances[name] = cls(name)
            return found

    @classmethod
    def forget(cls) -> None:
        """Drop what every instance knows (tests start from an empty Volume)."""
        with cls._instances_lock:
            cls._instances.clear()

    def ensure(self, blobs: Sequence[BlobFile], size_of: Callable[[str], int | None],
               upload: Callable[[Sequence[tuple[Path, str]]], None]) -> Ensured:
        """Make every blob of ``blobs`` present in the Volume: look up the ones this process has
        not seen, upload the missing ones in one batch, wait for the ones another run is
        uploading. Raises what the operations raise; a blob whose upload failed is left unknown
        (the next run looks it up again)."""
        unique = list({b.cid: b for b in blobs}.values())
        uploaded = uploaded_bytes = present = waited = 0
        while unique:
            mine: list[BlobFile] = []
            theirs: list[tuple[BlobFile, threading.Event]] = []
            with self._lock:
                for b in unique:
                    if b.cid in self._present:
                        present += 1
                    elif b.cid in self._inflight:
                        theirs.append((b, self._inflight[b.cid]))
                    else:
                        self._inflight[b.cid] = threading.Event()
                        mine.append(b)
            try:
                missing = [b for b in mine if size_of(blob_path(b.cid)) != b.size]
                if missing:
                    upload([(b.path, blob_path(b.cid)) for b in missing])
                uploaded += len(missing)
                uploaded_bytes += sum(b.size for b in missing)
                present += len(mine) - len(missing)
                with self._lock:
                    self._present.update(b.cid for b in mine)
            finally:
                with self._lock:
                    for b in mine:
                        self._inflight.pop(b.cid).set()
            for _, event in theirs:
                event.wait()
            with self._lock:     # a blob whose other uploader failed is this run's to upload
                unique = [b for b, _ in theirs if b.cid not in self._present]
                waited += len(theirs) - len(unique)
        return Ensured(uploaded, uploaded_bytes, present, waited)


__all__ = ["CAS_MOUNT", "DEFAULT_VOLUME", "VOLUME_ENV", "BlobFile", "BlobVolume", "Ensured", "blob_path",
           "mounted", "volume_name"]
