"""Errors raised by the cas package.

Every error carries a stable ``code`` that callers may match on or print; messages may change.

    CasError                 ERR_CAS              base: something about the store went wrong
    ├── BlobNotFound         ERR_BLOB_NOT_FOUND   no blob with that cid is in the store
    ├── CorruptBlob          ERR_CORRUPT_BLOB     a stored blob's bytes do not hash to its cid
    └── InvalidCid           ERR_INVALID_CID      a value is not a well-formed cid

Failures of the filesystem itself (disk full, permission denied on a caller's path, a missing
source file) are not wrapped: they surface as the ``OSError`` the operating system raised.
"""

from __future__ import annotations


class CasError(Exception):
    """Base class of every error raised by the cas package."""

    code = "ERR_CAS"


class BlobNotFound(CasError):
    """The store holds no blob with this cid."""

    code = "ERR_BLOB_NOT_FOUND"

    def __init__(self, cid: str, *, quarantined: bool = False) -> None:
        held = " (a corrupt copy of it is in the quarantine)" if quarantined else ""
        super().__init__(f"blob not found: {cid}{held}")
        self.cid = cid
        self.quarantined = quarantined      # it went because a read found it corrupt, not removed by a collector


class CorruptBlob(CasError):
    """The bytes stored under ``cid`` hash to ``actual`` instead."""

    code = "ERR_CORRUPT_BLOB"

    def __init__(self, cid: str, actual: str) -> None:
        super().__init__(f"corrupt blob: {cid} holds bytes that hash to {actual}")
        self.cid = cid
        self.actual = actual


class OversizedBlob(CorruptBlob):
    """More bytes were given for blob ``cid`` than its stated ``size`` (so they are not it; the
    rest was not read, so what they hash to is unknown)."""

    def __init__(self, cid: str, size: int) -> None:
        CasError.__init__(self, f"corrupt blob: more than the {size} bytes stated for {cid}")
        self.cid = cid
        self.actual = ""
        self.size = size


class InvalidCid(CasError):
    """``value`` is not ``b3:`` followed by 64 lowercase hex digits."""

    code = "ERR_INVALID_CID"

    def __init__(self, value: object) -> None:
        super().__init__(f"invalid cid: {value!r:.100}")
        self.value = value
