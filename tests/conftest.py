"""Shared fixtures: an isolated home, the repository's registry, a CLI runner."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parent.parent
REGISTRY = REPO / "registry"
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's home, registry or salt."""
    for var in ("THEORYX_HOME", "THEORYX_REGISTRY", "THEORYX_SALT", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    yield
    from theoryx.db import close_all

    close_all()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


class Cli:
    """``theoryx`` through click's CliRunner with a fixed home and registry."""

    def __init__(self, home: Path, registry: Path) -> None:
        self.home = home
        self.registry = registry
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        from theoryx.cli import cli

        base = ["--home", str(self.home), "--registry", str(self.registry)]
        return self.runner.invoke(cli, [*base, *args], input=input, catch_exceptions=False)

    def run_json(self, *args: str) -> dict[str, Any]:
        res = self("run", "--json", *args)
        body: dict[str, Any] = json.loads(res.stdout)
        body["_exit"] = res.exit_code
        return body


@pytest.fixture
def cli(home: Path) -> Cli:
    return Cli(home, REGISTRY)


def hello_args(*extra: str) -> list[str]:
    return ["--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", json.dumps(HELLO), *extra]


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"THEORYX_HOME": str(home), "THEORYX_REGISTRY": str(REGISTRY)})
    env.update(extra)
    return env
