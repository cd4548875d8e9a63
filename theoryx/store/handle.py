"""The stores of one home, opened together: the CAS and the LMDB environment; and how the
CAS's errors read as theoryx errors (:func:`store_error`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cas import BlobNotFound, CasError, CorruptBlob, Store
from theoryx.errors import CorruptBlobError, NoHome, NotFound, StoreError, UsageError
from theoryx.store.db import Database, open_db
from theoryx.store.home import Home, default_home


@dataclass(frozen=True)
class Stores:
    """A home, its CAS and its database. Open with :func:`open_stores`."""

    home: Home
    cas: Store
    db: Database


def home_path(root: Path | str | None = None) -> Path:
    """Where the home named ``root`` is (default: :func:`default_home`); nothing is opened. A
    ``~`` that cannot be expanded (no such user; no ``HOME`` and no password entry) is a
    :class:`UsageError`, not pathlib's ``RuntimeError``."""
    try:
        return Path(root).expanduser() if root is not None else default_home()
    except RuntimeError:        # "Could not determine home directory."
        if root is not None:
            raise UsageError(f"home {str(root)[:200]!r} cannot be expanded (no such user, or no home "
                             "directory to expand ~ to): give the path in full", option="home") from None
        raise UsageError("the default theoryx home ($XDG_CACHE_HOME/theoryx, else ~/.cache/theoryx) cannot be "
                         "expanded (no such user, or no home directory): set THEORYX_HOME") from None


def open_stores(root: Path | str | None = None, *, create: bool = True) -> Stores:
    """Open the home at ``root`` (default: :func:`default_home`), creating it when needed; with
    ``create=False`` a directory that is no home yet (:meth:`Home.exists`: a tag and a database
    folder) raises :class:`NoHome` (``ERR_NO_HOME``) and nothing is created, so a command that
    only reads never leaves a home behind at a misspelt path."""
    home = Home(home_path(root))
    if not create and not home.exists():
        raise NoHome(f"no theoryx home at {home.root}: nothing has run there (a typo in --home or "
                     "THEORYX_HOME?); nothing was created")
    home = home.ensure()
    return Stores(home, Store(home.cas), open_db(home.db))


def store_error(exc: CasError, what: str | None = None) -> StoreError:
    """The theoryx error for a :class:`cas.CasError` (``what`` names the blob for the user,
    e.g. ``output /artifacts/outputs/a.txt``; default: the cid).

    - :class:`cas.CorruptBlob` -> :class:`CorruptBlobError` (``ERR_CORRUPT_BLOB``): the CAS has
      already quarantined the blob, so the next run that needs it re-executes;
    - :class:`cas.BlobNotFound` -> :class:`NotFound` (``ERR_NOT_FOUND``);
    - anything else -> :class:`StoreError` (``ERR_STORE``).
    """
    if isinstance(exc, CorruptBlob):
        name = what or f"blob {exc.cid}"
        corrupt = CorruptBlobError(
            f"{name} is corrupt in the store (its bytes hash to {exc.actual}, not {exc.cid}); nothing of it "
            f"was used. It was moved to the quarantine (unless the store refused the move: a read-only "
            f"or immutable folder), so the next run that needs it re-executes; `theoryx verify --repair` "
            f"checks the rest of the store, removes what is corrupt and clears the quarantine")
        corrupt.cid = exc.cid
        return corrupt
    if isinstance(exc, BlobNotFound):
        if exc.quarantined:
            return NotFound(f"{what or 'blob ' + exc.cid} is not in the store: a read found it corrupt and moved it "
                            f"to the quarantine; run again to re-create it (`theoryx verify --repair` clears the "
                            f"quarantine)")
        return NotFound(f"{what or 'blob ' + exc.cid} is not in the store (removed by gc?); "
                        f"run again to re-create it")
    return StoreError(f"store error: {exc}")
