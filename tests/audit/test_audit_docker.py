"""Audits on the real Docker engine: data/textstats@1 on the ``local`` adapter.

Marked ``docker``: tests/conftest.py provides the engine (skip, or fail under
``THEORYX_REQUIRE_DOCKER=1``), the base image and the no-leftover-container check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import Cli


def _textstats(cli: Cli, tmp_path: Path, adapter: str) -> dict[str, Any]:
    f = tmp_path / "data.csv"
    f.write_text("name,n\na,1\nb,2\n")
    body = cli.run_json("--adapter", adapter, "--ref", "data/textstats@1", "--inputs-json",
                        json.dumps({"file": {"$attach": "f"}}), "--attach", f"f={f}")
    assert body["_exit"] == 0, body
    return body


@pytest.mark.docker
def test_textstats_on_local_audits_reproducible(cli: Cli, tmp_path: Path, docker_client: Any) -> None:
    run = _textstats(cli, tmp_path, "local")
    res = cli("audit", "--json", run["execution_id"])
    rec = json.loads(res.stdout)
    assert res.exit_code == 0 and rec["verdict"] == "reproducible", rec
    assert rec["adapter"] == "local" and rec["replay_execution"]


@pytest.mark.docker
def test_a_mock_execution_audited_on_local_with_current(cli: Cli, tmp_path: Path, docker_client: Any) -> None:
    """textstats' mock.py and its container compute the same bytes: the container action,
    a different memo key, reproduces the mock's outputs."""
    run = _textstats(cli, tmp_path, "mock")
    assert cli("audit", run["execution_id"], "--adapter", "local").exit_code == 2
    res = cli("audit", "--json", run["execution_id"], "--adapter", "local", "--current")
    rec = json.loads(res.stdout)
    assert res.exit_code == 0 and rec["verdict"] == "reproducible", rec
    assert rec["audited_memo_key"] != rec["memo_key"]
