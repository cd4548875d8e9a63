"""Helpers for the Docker tests (a uniquely named module; fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from theoryx_testing import REPO, SPAWNED, owned_containers

__all__ = ["SPAWNED", "cli_env", "owned_containers", "spawn_cli"]

def cli_env(home: Path, registry: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``python -m theoryx`` subprocess."""
    env = dict(os.environ)
    env.update({"THEORYX_HOME": str(home), "THEORYX_REGISTRY": str(registry),
                "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    env.update(extra)
    return env


def spawn_cli(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``python -m theoryx ARGS``; its containers are checked for leftovers too."""
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", *args], env=env, cwd=str(REPO), **kwargs)
    SPAWNED.add(proc.pid)
    return proc
