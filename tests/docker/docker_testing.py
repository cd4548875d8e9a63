"""Helpers for the Docker tests (a uniquely named module; fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from theoryx_testing import REPO

SPAWNED: set[int] = set()      # pids of theoryx subprocesses whose containers must not outlive them


def owned_containers(client: Any, pids: set[int] | None = None) -> list[dict[str, Any]]:
    """theoryx containers whose owner label names this process or one it spawned."""
    from theoryx.adapters.local import LABEL_MANAGED, LABEL_OWNER, owner_label

    host, boot, _, _ = owner_label().split("/")
    wanted = {str(p) for p in (pids if pids is not None else {os.getpid(), *SPAWNED})}
    out = []
    for c in client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"}):
        parts = (c.get("Labels") or {}).get(LABEL_OWNER, "").split("/")
        if len(parts) == 4 and parts[:2] == [host, boot] and parts[2] in wanted:
            out.append(c)
    return out


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
