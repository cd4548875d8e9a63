"""Fixtures for the modal adapter: a registry of test processors and the offline fake of the
Modal boundary (installed through ``theoryx.adapters.modal.adapter.BOUNDARY_FACTORY``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from modal_testing import FakeModal, StreamingFakeModal, make_registry


@pytest.fixture(autouse=True)
def _no_modal_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's Modal token: a real call could never start by accident."""
    for var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_CONFIG_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.delenv("THEORYX_BASE_IMAGE", raising=False)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return make_registry(tmp_path / "registry")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeModal:
    """A fake boundary with ``call`` only (logs are forwarded after the fact)."""
    from theoryx.adapters.modal import adapter as modal

    boundary = FakeModal(tmp_path / "modal")
    monkeypatch.setattr(modal, "BOUNDARY_FACTORY", lambda: boundary)
    return boundary


@pytest.fixture
def streaming_fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StreamingFakeModal:
    """A fake boundary that also streams (``call_stream``)."""
    from theoryx.adapters.modal import adapter as modal

    boundary = StreamingFakeModal(tmp_path / "modal")
    monkeypatch.setattr(modal, "BOUNDARY_FACTORY", lambda: boundary)
    return boundary
