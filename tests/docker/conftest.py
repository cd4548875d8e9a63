"""Fixtures for tests against the real Docker engine.

The engine, base-image and leftover-container fixtures are in tests/conftest.py (they serve
every folder's ``docker`` tests). Test processors live in a session registry built from
``processors/`` here: one probe image whose behaviour is chosen by ``inputs["mode"]``, under
several specs (limits, secrets, GPU, a pinned image). After every docker test, no container
owned by this process (or a CLI it spawned) may be left.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
    "net": ("{memory: 256, timeout: 60, network: true}", ""),
}
PINNED = f"""\
ref: test/pinned@1
image:
  ref: theoryx/not-here@sha256:{"0" * 64}
inputs: {{type: object}}
outputs: []
"""


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
