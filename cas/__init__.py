"""cas: a content-addressable store of immutable blobs named by their BLAKE3 hash.

Standalone: this package depends on ``blake3`` and the standard library only, never on theoryx.
POSIX only (Linux, macOS); on Linux it uses copy_file_range and sync_file_range where it can.

Typical use::

    store = Store(home / "cas-v1")
    blob = store.put_file(path)          # Blob(cid="b3:...", size=...), hashed while copied
    store.link_to(blob.cid, workspace / "input.bin")
    assert store.read(store.put_bytes(b"hello").cid) == b"hello"
"""

from cas.blob import Blob
from cas.cid import is_cid
from cas.errors import BlobNotFound, CasError, CorruptBlob, InvalidCid
from cas.hashing import cid_of_bytes, hash_file
from cas.store import Store

__all__ = [
    "Blob",
    "BlobNotFound",
    "CasError",
    "CorruptBlob",
    "InvalidCid",
    "Store",
    "cid_of_bytes",
    "hash_file",
    "is_cid",
]
