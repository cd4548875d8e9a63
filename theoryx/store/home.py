"""Where theoryx keeps its state: the layout of ``$THEORYX_HOME`` (see BUILD.md, "Store layout")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by theoryx.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def default_home() -> Path:
    """``$THEORYX_HOME``, else ``$XDG_CACHE_HOME/theoryx``, else ``~/.cache/theoryx``."""
    env = os.environ.get("THEORYX_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "theoryx"


@dataclass(frozen=True)
class Home:
    """The versioned directories below one theoryx home. Creating them is idempotent."""

    root: Path

    @property
    def cas(self) -> Path:
        return self.root / "cas-v1"

    @property
    def db(self) -> Path:
        return self.root / "db-v1"

    @property
    def leases(self) -> Path:
        return self.root / "leases"

    @property
    def work(self) -> Path:
        """Per-run workspaces; on the CAS's filesystem so outputs can be renamed into it."""
        return self.root / "work-v1"

    @property
    def vendor(self) -> Path:
        """Host-installed Python requirements for image build contexts, by requirements digest."""
        return self.root / "vendor-v1"

    def ensure(self) -> Home:
        """Create the root, its tag and the directories every run needs."""
        if not (self.root / "CACHEDIR.TAG").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            tag = self.root / "CACHEDIR.TAG"
            tmp = self.root / f".CACHEDIR.TAG.{os.getpid()}"
            tmp.write_text(CACHEDIR_TAG)
            os.replace(tmp, tag)
        for d in (self.db, self.leases, self.work):
            d.mkdir(exist_ok=True)
        return self
