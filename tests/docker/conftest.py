"""Fixtures for tests against the real Docker engine.

Tests marked ``docker`` skip when no engine answers, and fail instead when
``THEORYX_REQUIRE_DOCKER=1``. The offline base image is built once if missing
(``scripts/base-image.sh``, ~1 min). Test processors live in a session registry built from
``processors/`` here: one probe image whose behaviour is chosen by ``inputs["mode"]``, under
several specs (limits, secrets, GPU, a pinned image). After every docker test, no container
owned by this process (or a CLI it spawned) may be left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_testing import owned_containers
from theoryx_testing import REPO

HERE = Path(__file__).resolve().parent
BASE_IMAGE = "theoryx/python-base:bookworm"

_PROBE = """\
ref: test/{name}@1
image:
  dockerfile: probe/Dockerfile
command: ["python3", "/app/run.py"]
runtime: {runtime}
{extra}inputs:
  type: object
outputs:
  - {{path: out.json, mime: application/json, optional: true}}
"""
SPECS = {
    "probe": ("{cpu: 1, memory: 256, timeout: 60, pids: 64, tmpfs: 16}", ""),
    "tight": ("{cpu: 0.5, memory: 64, timeout: 60, pids: 32, tmpfs: 8}", ""),
    "secret": ("{memory: 256, timeout: 60}", "secrets: [PROBE_SECRET]\n"),
    "gpu": ("{memory: 256, timeout: 60, gpu: 1}", ""),
}
PINNED = f"""\
ref: test/pinned@1
image:
  ref: theoryx/not-here@sha256:{"0" * 64}
inputs: {{type: object}}
outputs: []
"""


def require_docker() -> bool:
    return os.environ.get("THEORYX_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A connected SDK client, or skip (fail under THEORYX_REQUIRE_DOCKER=1)."""
    from theoryx import docker_client
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
    from theoryx.docker_client import find_image

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


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry root with the probe processor under several specs."""
    root = tmp_path_factory.mktemp("registry")
    pdir = root / "processors" / "test"
    pdir.mkdir(parents=True)
    shutil.copytree(HERE / "processors" / "probe", pdir / "probe",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name, (runtime, extra) in SPECS.items():
        (pdir / f"{name}@1.yaml").write_text(_PROBE.format(name=name, runtime=runtime, extra=extra))
    (pdir / "pinned@1.yaml").write_text(PINNED)
    return root
