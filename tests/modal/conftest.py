"""Fixtures for the modal adapter: a registry of test processors, no Modal credentials ever, and
the Sandbox/Volume emulator on local Docker (tests marked ``docker``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modal_testing import make_registry


@pytest.fixture(autouse=True)
def _no_modal_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """No test sees the developer's Modal token (a real call could never start by accident),
    except the opt-in live tests, which need it."""
    if request.node.get_closest_marker("modal_live") is not None:
        return
    for var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_CONFIG_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.delenv("THEORYX_MODAL_VOLUME", raising=False)
    if request.node.get_closest_marker("docker") is None:
        monkeypatch.delenv("THEORYX_BASE_IMAGE", raising=False)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return make_registry(tmp_path / "registry")


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_client: Any) -> Iterator[Any]:
    """Modal's Sandbox/Volume subset emulated on the local engine, installed in place of the
    SDK's classes for the test (the image's USER is honoured)."""
    from emulator import Emulator

    emu = Emulator(tmp_path / "modal-emulator", docker_client).install(monkeypatch)
    try:
        yield emu
    finally:
        emu.close()
