"""Without Modal credentials the real boundary fails fast, before ``modal`` is even imported.

No test here sets a token: the check's logic is tested through :func:`token_configured`, which
reads a mapping and a config file passed to it, never the process's environment."""

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
    for name in ("create_sandbox", "upload", "blob_size", "tagged", "app", "volume"):
        monkeypatch.setattr(modal_boundary, name, lambda *a, _n=name, **k: entered.append(_n))
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


def configured(tmp_path: Path, text: str | None, **environ: str) -> bool:
    config = tmp_path / "modal.toml"
    if text is not None:
        config.write_text(text)
    return modal_boundary.token_configured(environ, config)


def test_a_token_needs_both_halves(tmp_path: Path) -> None:
    assert not configured(tmp_path, None)
    assert not configured(tmp_path, None, MODAL_TOKEN_ID="id-only")
    assert configured(tmp_path, None, MODAL_TOKEN_ID="id", MODAL_TOKEN_SECRET="secret")


def test_the_active_profile_of_the_config_file_counts(tmp_path: Path) -> None:
    text = '[old]\ntoken_id = "id-0"\n\n[work]\nactive = true\ntoken_id = "id-1"\ntoken_secret = "s-1"\n'
    assert configured(tmp_path, text)
    assert not configured(tmp_path, text, MODAL_PROFILE="old")          # a profile without a secret
    assert configured(tmp_path, text, MODAL_PROFILE="old", MODAL_TOKEN_SECRET="s-0")   # completed by the env
    assert configured(tmp_path, '[default]\ntoken_id = "id"\ntoken_secret = "s"\n')


def test_unreadable_config_is_no_credentials(tmp_path: Path) -> None:
    assert not configured(tmp_path, "this is [not toml")


def test_the_default_config_file_is_in_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_CONFIG_PATH", raising=False)
    assert modal_boundary.config_path() == Path(os.environ["HOME"]) / ".modal.toml"
    with pytest.raises(ModalCredentialsMissing):
        modal_boundary.require_credentials()
