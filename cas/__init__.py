"""cas: a content-addressable store of immutable blobs named by their BLAKE3 hash.

Standalone: this package depends on ``blake3`` and the standard library only, never on theoryx.

    >>> store = Store(Path("~/.cache/theoryx/cas-v1").expanduser())
    >>> blob = store.put_bytes(b"hello")          # Blob(cid='b3:ea8f16...', size=5)
    >>> store.read(blob.cid)
    b'hello'
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
