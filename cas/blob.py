"""The identity of a stored blob: its cid and its size, which always travel together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cas.cid import check_cid


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob's identity: ``cid`` (``b3:`` + 64 hex) and ``size`` in bytes.

    Construction validates both: a malformed cid raises :class:`~cas.errors.InvalidCid`, a size
    that is not an ``int`` raises ``TypeError``, a negative one ``ValueError``.
    """

    cid: str
    size: int

    def __post_init__(self) -> None:
        check_cid(self.cid)
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise TypeError(f"blob size must be an int, got {self.size!r}")
        if self.size < 0:
            raise ValueError(f"blob size must not be negative, got {self.size}")

    def to_dict(self) -> dict[str, object]:
        """Return ``{"cid": ..., "size": ...}``, the form used in manifests and JSON."""
        return {"cid": self.cid, "size": self.size}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Blob:
        """Build a Blob from :meth:`to_dict` output; extra keys are ignored.

        Raises :class:`~cas.errors.InvalidCid` for a missing or malformed cid and ``ValueError``
        for a missing or malformed size.
        """
        size = d.get("size")
        # ValueError, not TypeError: here a wrong type is bad data, not a programming error.
        if not isinstance(size, int) or isinstance(size, bool):
            raise ValueError(f"blob size must be a non-negative int, got {size!r}")
        return cls(cid=check_cid(d.get("cid")), size=size)
