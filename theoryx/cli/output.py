"""Shared CLI output helpers: showing outputs and writing files atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from theoryx.budget.money import dollars

__all__ = ["atomic_write", "dollars"]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
