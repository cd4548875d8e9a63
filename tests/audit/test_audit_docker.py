"""Audits on the real Docker engine: data/textstats@1 on the ``local`` adapter.

These follow the convention of tests/docker (skip without an engine, fail instead under
``THEORYX_REQUIRE_DOCKER=1``, build the offline base image once when missing, leave no container
behind). Those fixtures live in tests/docker/conftest.py, which only applies to that folder, so
the few needed here are restated in ``docker_engine``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import REPO, Cli

BASE_IMAGE = "theoryx/python-base:bookworm"


def _owned(client: Any) -> list[dict[str, Any]]:
    from theoryx.adapters.local import LABEL_MANAGED, LABEL_OWNER, owner_label

    mine = owner_label()
    return [c for c in client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"})
            if (c.get("Labels") or {}).get(LABEL_OWNER) == mine]


@pytest.fixture
def docker_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from theoryx import docker_client
    from theoryx.errors import DockerUnavailable

    try:
        client = docker_client.connect(timeout=5)
    except DockerUnavailable as exc:
        if os.environ.get("THEORYX_REQUIRE_DOCKER") == "1":
            pytest.fail(f"THEORYX_REQUIRE_DOCKER=1 but no Docker engine: {exc.message}")
        pytest.skip(f"no Docker engine: {exc.message}")
    name = os.environ.get("THEORYX_BASE_IMAGE", BASE_IMAGE)
    if docker_client.find_image(client, name) is None:
        proc = subprocess.run(["bash", str(REPO / "scripts" / "base-image.sh")], capture_output=True, text=True,
                              env={**os.environ, "THEORYX_BASE_IMAGE": name}, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"could not build the base image {name}:\n{proc.stderr[-3000:]}")
    monkeypatch.setenv("THEORYX_BASE_IMAGE", name)
    yield client
    left = _owned(client)
    for c in left:
        client.api.remove_container(c["Id"], force=True)
    assert not left, f"containers left behind: {[c['Names'] for c in left]}"


def _textstats(cli: Cli, tmp_path: Path, adapter: str) -> dict[str, Any]:
    f = tmp_path / "data.csv"
    f.write_text("name,n\na,1\nb,2\n")
    body = cli.run_json("--adapter", adapter, "--ref", "data/textstats@1", "--inputs-json",
                        json.dumps({"file": {"$attach": "f"}}), "--attach", f"f={f}")
    assert body["_exit"] == 0, body
    return body


@pytest.mark.docker
def test_textstats_on_local_audits_reproducible(cli: Cli, tmp_path: Path, docker_engine: Any) -> None:
    run = _textstats(cli, tmp_path, "local")
    res = cli("audit", "--json", run["execution_id"])
    rec = json.loads(res.stdout)
    assert res.exit_code == 0 and rec["verdict"] == "reproducible", rec
    assert rec["adapter"] == "local" and rec["replay_execution"]


@pytest.mark.docker
def test_a_mock_execution_audited_on_local_with_current(cli: Cli, tmp_path: Path, docker_engine: Any) -> None:
    """textstats' mock.py and its container compute the same bytes: the container action,
    a different memo key, reproduces the mock's outputs."""
    run = _textstats(cli, tmp_path, "mock")
    assert cli("audit", run["execution_id"], "--adapter", "local").exit_code == 2
    res = cli("audit", "--json", run["execution_id"], "--adapter", "local", "--current")
    rec = json.loads(res.stdout)
    assert res.exit_code == 0 and rec["verdict"] == "reproducible", rec
    assert rec["audited_memo_key"] != rec["memo_key"]
