"""Fixtures for the reproducibility tests: a private registry (the shipped processors plus test
processors that write random bytes) and an isolated config directory for signing keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from theoryx_testing import REGISTRY, Cli

NOISE_SPEC = """\
ref: test/{name}@1
description: writes random bytes (a processor that cannot reproduce)
image:
  dockerfile: noise/Dockerfile
{extra}inputs: {{type: object}}
outputs:
  - {{path: noise.bin, mime: application/octet-stream}}
  - {{path: noise.txt, mime: text/plain}}
  - {{path: same.txt, mime: text/plain}}
"""

NOISE_MOCK = '''\
"""Random outputs; fails when NOISE_FAIL is set (a processor whose behaviour changed)."""
import os


def run(inputs, outdir, ctx):
    if os.environ.get("NOISE_FAIL"):
        raise RuntimeError("noise: asked to fail")
    (outdir / "noise.bin").write_bytes(os.urandom(32))
    (outdir / "noise.txt").write_text("fixed line\\n" + os.urandom(8).hex() + "\\n")
    (outdir / "same.txt").write_text("same\\n")
'''


@pytest.fixture(autouse=True)
def _config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Signing keys never touch the developer's ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("NOISE_FAIL", raising=False)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A writable registry: the shipped processors, ``test/noise@1`` (random outputs) and
    ``test/dice@1`` (the same, declared ``stochastic: true``)."""
    root = tmp_path / "registry"
    shutil.copytree(REGISTRY / "processors", root / "processors",
                    ignore=shutil.ignore_patterns("__pycache__", "vendor"))
    test = root / "processors" / "test"
    (test / "noise").mkdir(parents=True)
    (test / "noise" / "Dockerfile").write_text("FROM scratch\n")
    (test / "noise" / "mock.py").write_text(NOISE_MOCK)
    (test / "noise@1.yaml").write_text(NOISE_SPEC.format(name="noise", extra=""))
    (test / "dice@1.yaml").write_text(NOISE_SPEC.format(name="dice", extra="stochastic: true\n"))
    return root


@pytest.fixture
def cli(home: Path, registry: Path) -> Cli:
    return Cli(home, registry)
