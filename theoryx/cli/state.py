"""The CLI's state object, built by the group and passed to every command."""

from __future__ import annotations

from dataclasses import dataclass, field

from theoryx.store.handle import Stores, open_stores


@dataclass
class State:
    """Global options; ``stores`` opens the home on first use."""

    home: str | None = None
    registry: str | None = None
    _stores: Stores | None = field(default=None, repr=False)

    def stores(self) -> Stores:
        if self._stores is None:
            self._stores = open_stores(self.home)
        return self._stores
