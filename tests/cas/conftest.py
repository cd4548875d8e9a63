"""Fixtures for the cas tests: a fresh store per test and a way to rot a blob on disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cas import Store

Corrupt = Callable[..., None]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A durable store (fsync on) in a directory that does not exist yet."""
    return Store(tmp_path / "cas-v1")


def _corrupt(path: Path, offset: int = 0) -> None:
    mode = path.stat().st_mode
    os.chmod(path, 0o644)
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    os.chmod(path, mode)


@pytest.fixture
def corrupt() -> Corrupt:
    """``corrupt(path, offset=0)`` flips one bit of a read-only blob in place, as disk rot would."""
    return _corrupt
