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

COSTLY_REF = "test/costly@1"
COSTLY = f"""\
ref: test/costly@1
description: A processor that declares a fixed cost, for budget tests.
image:
  ref: example.invalid/costly@sha256:{"0" * 64}
runtime: {{timeout: 60}}
cost: {{usd: 0.25}}
inputs:
  type: object
  properties:
    i: {{type: integer}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""
"""A mock-run processor that declares a fixed cost of $0.25, for budget tests."""


class Cli:
    """``theoryx`` through click's CliRunner with a fixed home and registry."""

    def __init__(self, home: Path, registry: Path) -> None:
        self.home = home
        self.registry = registry
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        from theoryx.cli.app import cli

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


SPAWNED: set[int] = set()      # pids of theoryx subprocesses whose containers must not outlive them


def owned_containers(client: Any, pids: set[int] | None = None) -> list[dict[str, Any]]:
    """theoryx containers whose owner label names this process or one it spawned."""
    from theoryx.adapters.local.adapter import LABEL_MANAGED, LABEL_OWNER, owner_label

    host, boot, _, _ = owner_label().split("/")
    wanted = {str(p) for p in (pids if pids is not None else {os.getpid(), *SPAWNED})}
    out = []
    for c in client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"}):
        parts = (c.get("Labels") or {}).get(LABEL_OWNER, "").split("/")
        if len(parts) == 4 and parts[:2] == [host, boot] and parts[2] in wanted:
            out.append(c)
    return out


def output(home: Path, result: Any, rel: str) -> bytes:
    """The bytes of ``result``'s output at ``rel`` below its write prefix."""
    from cas import Store

    by_path = {o.path: o for o in result.outputs}
    return Store(home / "cas-v1").read(by_path[(result.record.write_prefix or "") + rel].cid)


def mock_spec(ref: str, outputs: str = "") -> str:
    """A spec for ``ref`` that only the mock adapter runs (its image cannot be pulled), with
    ``inputs: {type: object}`` and ``outputs:`` followed by ``outputs`` (YAML list lines)."""
    return (f"ref: {ref}\nimage:\n  ref: example.invalid/{ref.split('/')[1].split('@')[0]}@sha256:{'0' * 64}\n"
            f"inputs: {{type: object}}\noutputs:\n{outputs}")


def write_spec(root: Path, ref_path: str, text: str) -> Path:
    """Write ``text`` as the spec ``<root>/processors/<ref_path>.yaml`` (``ref_path`` like
    ``t/outs@1``), making its folders; returns the file's path."""
    path = root / "processors" / f"{ref_path}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
