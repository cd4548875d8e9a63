"""The stores of one home, opened together: the CAS and the LMDB environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cas import Store
from theoryx.store.db import Database, open_db
from theoryx.store.home import Home, default_home


@dataclass(frozen=True)
class Stores:
    """A home, its CAS and its database. Open with :func:`open_stores`."""

    home: Home
    cas: Store
    db: Database


def open_stores(root: Path | str | None = None) -> Stores:
    """Open (creating when needed) the home at ``root`` (default: :func:`default_home`)."""
    home = Home(Path(root).expanduser() if root is not None else default_home()).ensure()
    return Stores(home, Store(home.cas), open_db(home.db))
