"""Fixtures for the team cache: a real nginx (WebDAV) per test, two teammates' homes, keys.

nginx comes from the operating system's packages (``scripts/nginx-up.sh``); nothing is installed
here. Without nginx the tests skip, unless ``THEORYX_REQUIRE_DOCKER=1`` (CI), where they fail.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from nginx_server import PASSWORD, USER, Nginx, available

from theoryx.provenance import keys

SPEC = """\
ref: test/echo@1
description: Writes its text to out.txt and `big` pseudo-random bytes to blob.bin; counts its runs.
image:
  ref: example.invalid/echo@sha256:{zeros}
runtime: {{timeout: 300}}
inputs:
  type: object
  properties:
    text: {{type: string}}
    big: {{type: integer, minimum: 0}}
outputs:
  - {{path: out.txt, mime: text/plain}}
  - {{path: blob.bin, mime: application/octet-stream, optional: true}}
"""
MOCK = """\
import os, random

def run(inputs, outdir, ctx):
    counter = os.environ.get("REMOTE_TEST_COUNTER")
    if counter:
        with open(counter, "a") as f:
            f.write(inputs.get("text", "") + "\\n")
    (outdir / "out.txt").write_text("echo: " + inputs.get("text", ""))
    big = int(inputs.get("big", 0))
    if big:
        rnd = random.Random(big)
        with open(outdir / "blob.bin", "wb") as f:
            left = big
            while left:
                n = min(left, 4 << 20)
                f.write(rnd.randbytes(n))
                left -= n
    return {}
"""


def require() -> bool:
    return os.environ.get("THEORYX_REQUIRE_DOCKER") == "1"


@pytest.fixture(autouse=True)
def _fresh_remote_state() -> Iterator[None]:
    """Each test starts with no remembered failures and no open remote stores."""
    from theoryx.remote import cache

    cache.reset()
    yield
    cache.reset()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    """A running nginx with a writer location (basic auth) and a read-only one, on a free port."""
    reason = available()
    server = Nginx(tmp_path / "nginx")
    if reason is None:
        try:
            server.start()
        except RuntimeError as exc:
            reason = str(exc)
    if reason is not None:
        if require():
            pytest.fail(f"THEORYX_REQUIRE_DOCKER=1 but nginx cannot run: {reason}")
        pytest.skip(f"nginx cannot run: {reason}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    folder = root / "processors" / "test" / "echo"
    folder.mkdir(parents=True)
    (root / "processors" / "test" / "echo@1.yaml").write_text(SPEC.format(zeros="0" * 64))
    (folder / "mock.py").write_text(MOCK)
    return root


@pytest.fixture
def counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file the processor appends one line to per execution (hits add nothing)."""
    path = tmp_path / "executions.txt"
    path.touch()
    monkeypatch.setenv("REMOTE_TEST_COUNTER", str(path))
    return path


def executions(counter: Path) -> int:
    return len(counter.read_text().splitlines())


@pytest.fixture
def writer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writers' basic-auth credentials, in the environment only."""
    monkeypatch.setenv("THEORYX_REMOTE_USER", USER)
    monkeypatch.setenv("THEORYX_REMOTE_PASSWORD", PASSWORD)


@dataclass
class KeyPair:
    private: Path
    public: Path
    keyid: str


@pytest.fixture
def keypairs(tmp_path: Path) -> dict[str, KeyPair]:
    out = {}
    for name in ("alice", "bob"):
        path = tmp_path / "keys" / f"{name}.key"
        kid = keys.generate(path)
        out[name] = KeyPair(path, keys.public_path(path), kid)
    return out


@dataclass
class Teammate:
    """One person's home with its remote.json; runs through a Session."""

    home: Path
    registry: Path
    config: dict[str, Any] = field(default_factory=dict)

    def configure(self, **config: Any) -> Teammate:
        self.config = config
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "remote.json").write_text(json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}))
        return self

    def run(self, text: str = "hello", big: int = 0, **options: Any) -> Any:
        import theoryx

        with theoryx.Session(self.home, registry=str(self.registry)) as s:
            return s.run("test/echo@1", inputs={"text": text, "big": big}, adapter="mock", **options)


@pytest.fixture
def teammates(tmp_path: Path, registry: Path) -> tuple[Teammate, Teammate]:
    return Teammate(tmp_path / "alice-home", registry), Teammate(tmp_path / "bob-home", registry)


def remote_files(server: Nginx) -> list[str]:
    """Every object on the server, as paths below its root (nginx's temp files are elsewhere)."""
    return sorted(str(p.relative_to(server.root)) for p in server.root.rglob("*") if p.is_file())
