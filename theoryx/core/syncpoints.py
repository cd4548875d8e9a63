"""Named pause points for tests that force interleavings between processes (no sleeps).

Inactive (one dict lookup) unless ``THEORYX_SYNC_DIR`` is set. When it is, and the point's name
is listed in ``THEORYX_SYNC_POINTS`` (comma-separated), ``point(name)`` creates
``<dir>/<name>.<pid>.reached`` and blocks until ``<dir>/<name>.<pid>.go`` (or ``<dir>/<name>.go``)
exists. Points in the run flow: ``after_prepare``, ``after_lookup``, ``before_execute``,
``after_ingest``, ``before_record``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def point(name: str, timeout_s: float = 120.0) -> None:
    """Pause at ``name`` if a test asked for it; a no-op otherwise."""
    directory = os.environ.get("THEORYX_SYNC_DIR")
    if not directory or name not in os.environ.get("THEORYX_SYNC_POINTS", "").split(","):
        return
    base = Path(directory)
    pid = os.getpid()
    (base / f"{name}.{pid}.reached").touch()
    deadline = time.monotonic() + timeout_s
    while not ((base / f"{name}.{pid}.go").exists() or (base / f"{name}.go").exists()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"sync point {name} was never released")
        time.sleep(0.005)
