"""Shared fixtures: an isolated home and environment, a CLI runner."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import REGISTRY, REPO, Cli, owned_containers

BASE_IMAGE = "theoryx/python-base:bookworm"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's home, registry or salt."""
    for var in ("THEORYX_HOME", "THEORYX_REGISTRY", "THEORYX_SALT", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    yield
    from theoryx.store.db import close_all

    close_all()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cli(home: Path) -> Cli:
    return Cli(home, REGISTRY)


# -- Docker: tests marked `docker` skip without an engine, and fail instead under
# THEORYX_REQUIRE_DOCKER=1 (CI). The offline base image is built once if missing (~1 min).

def require_docker() -> bool:
    return os.environ.get("THEORYX_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A connected SDK client, or skip (fail under THEORYX_REQUIRE_DOCKER=1)."""
    from theoryx.adapters.local import docker_client
    from theoryx.errors import DockerUnavailable

    try:
        return docker_client.connect(timeout=5)
    except DockerUnavailable as exc:
        if require_docker():
            pytest.fail(f"THEORYX_REQUIRE_DOCKER=1 but no Docker engine: {exc.message}")
        pytest.skip(f"no Docker engine: {exc.message}")


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The configured base image, built by scripts/base-image.sh when missing."""
    from theoryx.adapters.local.docker_client import find_image

    name = os.environ.get("THEORYX_BASE_IMAGE", BASE_IMAGE)
    if find_image(docker_client, name) is None:
        proc = subprocess.run(["bash", str(REPO / "scripts" / "base-image.sh")], capture_output=True,
                              text=True, env={**os.environ, "THEORYX_BASE_IMAGE": name}, timeout=900)
        if proc.returncode != 0 or find_image(docker_client, name) is None:
            pytest.fail(f"could not build the base image {name}:\n{proc.stderr[-3000:]}")
    return name


@pytest.fixture(autouse=True)
def _docker_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For docker tests: an engine, the base image configured, and no leftovers afterwards."""
    if request.node.get_closest_marker("docker") is None:
        yield
        return
    client = request.getfixturevalue("docker_client")
    monkeypatch.setenv("THEORYX_BASE_IMAGE", request.getfixturevalue("base_image"))
    yield
    left = owned_containers(client)
    for c in left:
        client.api.remove_container(c["Id"], force=True)
    assert not left, f"containers left behind: {[c['Names'] for c in left]}"
