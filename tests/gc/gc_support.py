"""Helpers for the store lifecycle tests: in-process runs, ageing blobs, reading the store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from theoryx_testing import REGISTRY

import theoryx
from theoryx.store.handle import Stores, open_stores

HOUR = 3600.0


def inputs(text: str = "Hello") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def run(home: Path, text: str = "Hello", **kw: Any) -> theoryx.RunResult:
    """A mock run of llm/litellm@1 in this process."""
    kw.setdefault("adapter", "mock")
    kw.setdefault("registry", str(REGISTRY))
    return theoryx.run("llm/litellm@1", inputs=kw.pop("inputs", None) or inputs(text), home=home, **kw)


def stores(home: Path) -> Stores:
    return open_stores(home)


def blob_files(home: Path) -> dict[str, Path]:
    """cid -> file of every published blob."""
    root = home / "cas-v1" / "blobs"
    return {f"b3:{p.parent.name}{p.name}": p for p in root.glob("*/*") if p.is_file()}


def age(home: Path, seconds: float = 2 * HOUR, only: set[str] | None = None) -> None:
    """Set the mtime of blobs (all, or ``only`` these cids) ``seconds`` into the past."""
    then = time.time() - seconds
    for cid, path in blob_files(home).items():
        if only is None or cid in only:
            os.utime(path, (then, then))


def garbage(home: Path, n: int, tag: str = "garbage") -> set[str]:
    """Store ``n`` blobs nothing names."""
    cas = stores(home).cas
    return {cas.put_bytes(f"{tag} {i}".encode()).cid for i in range(n)}


def live_cids(result: theoryx.RunResult) -> set[str]:
    """Every blob a successful run's record names."""
    return set(result.record.blobs())


def gc_json(cli: Any, *args: str) -> dict[str, Any]:
    res = cli("gc", "--json", *args)
    assert res.exit_code == 0, res.output
    body: dict[str, Any] = json.loads(res.stdout)
    return body


def verify_json(cli: Any, *args: str) -> tuple[int, dict[str, Any]]:
    res = cli("verify", "--json", *args)
    body: dict[str, Any] = json.loads(res.stdout)
    return res.exit_code, body
