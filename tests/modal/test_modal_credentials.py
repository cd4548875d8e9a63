"""Without Modal credentials the real boundary fails fast, before ``modal`` is even imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import REPO, Cli

import theoryx
from theoryx.adapters.modal import boundary as modal_boundary
from theoryx.errors import ModalCredentialsMissing

HINT = "Modal credentials not configured: run `modal token new` or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET"


def test_missing_credentials_fail_fast_without_entering_the_boundary(
        registry: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entered: list[Any] = []
    monkeypatch.setattr(modal_boundary, "call", lambda call: entered.append(call))
    monkeypatch.setattr(modal_boundary, "call_stream", lambda call: entered.append(call))
    t0 = time.monotonic()
    with pytest.raises(ModalCredentialsMissing) as info:
        theoryx.run("test/probe@1", inputs={"mode": "hello"}, adapter="modal", home=home, registry=str(registry))
    assert time.monotonic() - t0 < 2
    assert info.value.code == "ERR_MODAL_CREDENTIALS" and info.value.message == HINT
    assert entered == []


def test_missing_credentials_never_import_modal(registry: Path, home: Path, tmp_path: Path) -> None:
    script = f"""
import json, sys, time
sys.path.insert(0, {str(REPO)!r})
import theoryx
from theoryx.errors import TheoryxError
t0 = time.monotonic()
try:
    theoryx.run("test/probe@1", inputs={{"mode": "hello"}}, adapter="modal", home={str(home)!r},
            registry={str(registry)!r})
except TheoryxError as exc:
    print(json.dumps({{"code": exc.code, "s": time.monotonic() - t0, "modal": "modal" in sys.modules}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = str(tmp_path / "nobody")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    body = json.loads(proc.stdout)
    assert body == {"code": "ERR_MODAL_CREDENTIALS", "s": body["s"], "modal": False}, proc.stderr
    assert body["s"] < 2


def test_cli_reports_the_missing_credentials(registry: Path, home: Path) -> None:
    body = Cli(home, registry).run_json("--adapter", "modal", "--ref", "test/probe@1",
                                        "--inputs-json", '{"mode": "hello"}')
    assert body["status"] == "error" and body["_exit"] != 0
    assert body["error"] == {"code": "ERR_MODAL_CREDENTIALS", "message": HINT}


def write_config(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "modal.toml"
    path.write_text(text)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(path))


def test_tokens_in_the_environment_are_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-1")
    with pytest.raises(ModalCredentialsMissing):
        modal_boundary.require_credentials()
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-1")
    modal_boundary.require_credentials()


def test_tokens_of_the_active_profile_are_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, '[old]\ntoken_id = "ak-0"\n\n[work]\nactive = true\ntoken_id = "ak-1"\n'
                           'token_secret = "as-1"\n', monkeypatch)
    modal_boundary.require_credentials()
    monkeypatch.setenv("MODAL_PROFILE", "old")            # a profile without a secret
    with pytest.raises(ModalCredentialsMissing):
        modal_boundary.require_credentials()
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-0")      # the environment completes it
    modal_boundary.require_credentials()


def test_default_config_file_is_in_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModalCredentialsMissing):
        modal_boundary.require_credentials()
    home = Path(os.environ["HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / ".modal.toml").write_text('[default]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\n')
    modal_boundary.require_credentials()


def test_unreadable_config_is_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, "this is [not toml", monkeypatch)
    with pytest.raises(ModalCredentialsMissing):
        modal_boundary.require_credentials()
