"""Fixtures for the plan tests: a registry with a processor of known cost and a CLI on it
(Docker fixtures for tests marked ``docker`` are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from plans_testing import make_registry
from theoryx_testing import Cli


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return make_registry(tmp_path / "registry")


@pytest.fixture
def pcli(home: Path, registry: Path) -> Cli:
    """The CLI on the test registry."""
    return Cli(home, registry)
