"""Fixtures for the plan tests: a registry with a processor of known cost, a CLI on it, and
(for tests marked ``docker``) a Docker engine, following tests/docker/conftest.py: skip when no
engine answers, fail instead when ``THEORYX_REQUIRE_DOCKER=1``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from plans_testing import make_registry
from theoryx_testing import REPO, Cli

BASE_IMAGE = "theoryx/python-base:bookworm"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return make_registry(tmp_path / "registry")


@pytest.fixture
def pcli(home: Path, registry: Path) -> Cli:
    """The CLI on the test registry."""
    return Cli(home, registry)


@pytest.fixture
def docker_base_image(monkeypatch: pytest.MonkeyPatch) -> str:
    """A Docker engine and the configured base image (built when missing), or skip."""
    from theoryx import docker_client
    from theoryx.errors import DockerUnavailable

    try:
        client = docker_client.connect(timeout=5)
    except DockerUnavailable as exc:
        if os.environ.get("THEORYX_REQUIRE_DOCKER") == "1":
            pytest.fail(f"THEORYX_REQUIRE_DOCKER=1 but no Docker engine: {exc.message}")
        pytest.skip(f"no Docker engine: {exc.message}")
    name = os.environ.get("THEORYX_BASE_IMAGE", BASE_IMAGE)
    if docker_client.find_image(client, name) is None:
        proc = subprocess.run(["bash", str(REPO / "scripts" / "base-image.sh")], capture_output=True,
                              text=True, env={**os.environ, "THEORYX_BASE_IMAGE": name}, timeout=900)
        if proc.returncode != 0 or docker_client.find_image(client, name) is None:
            pytest.fail(f"could not build the base image {name}:\n{proc.stderr[-3000:]}")
    monkeypatch.setenv("THEORYX_BASE_IMAGE", name)
    return name
