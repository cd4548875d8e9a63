"""Helpers for the plan tests (a uniquely named module; fixtures are in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from theoryx_testing import COSTLY, COSTLY_REF, REPO

import theoryx as theoryx_api
from theoryx.store.db import Database, open_db

ESTIMATE = 250_000          # micro-USD: the spec's fixed cost.usd


def make_registry(root: Path) -> Path:
    """A registry root holding ``test/costly@1`` (mock adapter: placeholder outputs)."""
    pdir = root / "processors" / "test"
    pdir.mkdir(parents=True)
    (pdir / "costly@1.yaml").write_text(COSTLY)
    return root


def run_costly(home: Path, registry: Path, i: int, *, plan: str | None = "p", cost_usd: float = 0.25,
               **kw: Any) -> theoryx_api.RunResult:
    opts = {"cost_usd": cost_usd, **kw.pop("adapter_options", {})}
    return theoryx_api.run(COSTLY_REF, inputs={"i": i}, adapter="mock", plan=plan, home=home,
                   registry=str(registry), adapter_options=opts, **kw)


def db_of(home: Path) -> Database:
    return open_db(home / "db-v1")


def cli_args(registry: Path, plan: str, i: int, cost_usd: float = 0.25) -> list[str]:
    """``python -m theoryx run`` arguments for one costly run."""
    return [sys.executable, "-m", "theoryx", "run", "--json", "--adapter", "mock", "--ref", COSTLY_REF,
            "--registry", str(registry), "--plan", plan, "--inputs-json", json.dumps({"i": i}),
            "--adapter-opts-json", json.dumps({"cost_usd": cost_usd})]


def theoryx(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m theoryx ARGS`` against ``home``."""
    from theoryx_testing import subprocess_env

    return subprocess.run([sys.executable, "-m", "theoryx", *args], env=subprocess_env(home), cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def prefix_totals_within_limit(events: list[dict[str, Any]]) -> bool:
    """At every point of the ledger, spent + reserved stayed within the limit in force, except
    by the overruns recorded so far (what processors reported beyond their reservations)."""
    limit: int | None = None
    spent = reserved = overruns = 0
    for e in events:
        kind = e["kind"]
        if kind in ("create", "set-limit"):
            limit = e["limit_micros"]
        elif kind == "reserve":
            reserved += e["amount_micros"]
        elif kind == "settle":
            reserved -= e["released_micros"]
            spent += e["amount_micros"]
        elif kind == "release":
            reserved -= e["amount_micros"]
        elif kind == "overrun":
            spent += e["amount_micros"]
            overruns += e["amount_micros"]
        if limit is not None and spent + reserved > limit + overruns:
            return False
    return True
