"""Fixtures for the cas tests: a fresh store per test and deterministic file contents."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cas import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A durable store (fsync on) in a directory that does not exist yet."""
    return Store(tmp_path / "cas-v1")


def random_bytes(size: int, seed: int = 0) -> bytes:
    """``size`` pseudo-random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` and return the path."""
    path.write_bytes(data)
    return path
