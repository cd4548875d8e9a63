"""Helpers for the Docker tests (a uniquely named module; fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from theoryx_testing import REPO, SPAWNED, owned_containers

__all__ = ["SPAWNED", "cancel_when_running", "cli_env", "owned_containers", "spawn_cli", "wait_for"]


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


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, show: Callable[[], Any] | None = None) -> None:
    """Poll ``predicate`` every 0.2 s; fail after ``timeout`` seconds naming ``what``
    (and what ``show`` returns)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f": {show()}" if show else ""))
        time.sleep(0.2)


def cancel_when_running(client: Any, holder: list[Any], count: int, settle_s: float = 0.0) -> list[float]:
    """On a thread: once ``count`` containers of this process run (and ``settle_s`` later),
    cancel the batch ``holder[0]`` (filled by ``Session.map(..., batch=holder)``). Returns the
    list that receives the ``time.monotonic()`` of the cancel."""
    cancelled_at: list[float] = []

    def cancel() -> None:
        wait_for(lambda: len([c for c in owned_containers(client) if c["State"] == "running"]) == count,
                 240, f"{count} running containers")
        time.sleep(settle_s)
        cancelled_at.append(time.monotonic())
        holder[0].cancel()

    threading.Thread(target=cancel, daemon=True).start()
    return cancelled_at
