"""The CLI's state object, built by the group and passed to every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from theoryx.store.handle import Stores, home_path, open_stores


@dataclass
class State:
    """Global options; ``stores`` opens the home on first use: commands that only read it pass
    ``create=False`` and fail with ``ERR_NO_HOME`` where there is none."""

    home: str | None = None
    registry: str | None = None
    _stores: Stores | None = field(default=None, repr=False)

    def stores(self, *, create: bool = True) -> Stores:
        if self._stores is None:
            self._stores = open_stores(self.home, create=create)
        return self._stores

    def home_root(self) -> Path:
        """Where the home is (or would be), without opening or creating it."""
        return home_path(self.home)
