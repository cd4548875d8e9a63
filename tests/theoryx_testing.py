"""Shared test helpers (a uniquely named module: every test folder has its own conftest)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parent.parent
REGISTRY = REPO / "registry"
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


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


def hello_args(*extra: str) -> list[str]:
    return ["--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", json.dumps(HELLO), *extra]


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"THEORYX_HOME": str(home), "THEORYX_REGISTRY": str(REGISTRY)})
    env.update(extra)
    return env
