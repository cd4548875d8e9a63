"""``modal`` and ``litellm`` are optional extras: without them theoryx says what to install, or
prices LLM calls from its vendored copy of LiteLLM's cost map.

A missing package is simulated, never uninstalled: ``sys.modules[name] = None`` makes every
``import name`` raise ImportError and ``importlib.util.find_spec(name)`` return None, as on a host
without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import HELLO, REPO, subprocess_env

from theoryx.adapters.modal import boundary
from theoryx.budget import pricing
from theoryx.errors import ModalError, ModalNotInstalled

MODAL_MISSING = "Modal not available: install the 'modal' package (pip install 'theoryx[modal]')"


def without(module: str, code: str) -> str:
    """Python source that runs ``code`` as if ``module`` were not installed."""
    return f"import sys\nsys.modules[{module!r}] = None\n{code}"


CLI = "from theoryx.cli.main import main\nsys.argv[0] = 'theoryx'\nmain()"


def run_cli_without_modal(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", without("modal", CLI), "run", *args, "--adapter", "modal",
            "--ref", "llm/litellm@1", "--inputs-json", json.dumps(HELLO)]
    return subprocess.run(argv, env=subprocess_env(home, **env), capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)


# -- modal -------------------------------------------------------------------------------------


def test_the_modal_adapter_without_modal_prints_the_seed_message(home: Path) -> None:
    res = run_cli_without_modal(home)
    assert (res.returncode, res.stdout, res.stderr) == (1, "", f"Error: {MODAL_MISSING}\n")


def test_without_modal_the_message_wins_over_configured_credentials(home: Path) -> None:
    res = run_cli_without_modal(home, "--json", MODAL_TOKEN_ID="ak-x", MODAL_TOKEN_SECRET="as-x")
    assert res.returncode == 1
    assert json.loads(res.stdout)["error"] == {"code": "ERR_MODAL_NOT_INSTALLED", "message": MODAL_MISSING}
    assert res.stderr == f"Error: {MODAL_MISSING}\n"


def test_every_modal_import_spot_raises_modal_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-x")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-x")
    monkeypatch.setitem(sys.modules, "modal", None)
    for attempt in (boundary.require_modal, boundary.require_credentials, boundary._import_modal):
        with pytest.raises(ModalNotInstalled) as info:
            attempt()
        assert info.value.message == MODAL_MISSING
    err = info.value
    assert isinstance(err, ModalError)
    assert err.code == "ERR_MODAL_NOT_INSTALLED"
    # A boundary call that fails this way is reported as itself, not re-translated through the
    # (missing) modal.exception module.
    assert boundary.translate(err, "running x on Modal") is err


def test_with_modal_installed_the_checks_pass() -> None:
    boundary.require_modal()
    assert boundary._import_modal().exception.AuthError is not None


# -- litellm -----------------------------------------------------------------------------------

PRICE_PROBE = """
import json
from theoryx.budget import pricing
print(json.dumps({
    "path": str(pricing.cost_map_path()), "litellm_imported": sys.modules.get("litellm") is not None,
    "prices": {m: None if p is None else [str(p.input_per_token), str(p.output_per_token), p.max_output_tokens]
               for m in MODELS for p in [pricing.model_price(m, pricing.Rates())]},
}))
"""
MODELS = ["gpt-4o-mini", "openai/gpt-4o-mini", "claude-3-5-sonnet-20240620", "no-such-model"]


def price_row(p: pricing.ModelPrice | None) -> list[Any] | None:
    return None if p is None else [str(p.input_per_token), str(p.output_per_token), p.max_output_tokens]


def test_without_litellm_prices_come_from_the_vendored_map() -> None:
    code = without("litellm", f"MODELS = {MODELS!r}\n{PRICE_PROBE}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=60, check=True)
    body = json.loads(out.stdout)
    assert body["path"] == "None" and body["litellm_imported"] is False
    vendored = pricing.vendored_cost_map()
    expected = {m: price_row(pricing.ModelPrice.from_entry(m, vendored[m])) if m in vendored else None
                for m in MODELS}
    expected["openai/gpt-4o-mini"] = expected["gpt-4o-mini"]
    assert body["prices"] == expected
    assert body["prices"]["gpt-4o-mini"] is not None and body["prices"]["no-such-model"] is None


def test_the_vendored_map_ships_with_its_source_and_licence() -> None:
    data = Path(pricing.__file__).parent / "data"
    raw = json.loads((data / "litellm_cost_map.json").read_text())
    assert raw["source"]["package"] == "litellm" and raw["source"]["license"].startswith("MIT")
    notice = (data / "LICENSE-litellm.txt").read_text()
    assert "MIT License" in notice and "Copyright (c) 2023 Berri AI" in notice
    assert len(raw["models"]) > 1000


def full_map() -> dict[str, Any]:
    path = pricing.cost_map_path()
    if path is None:
        pytest.skip("litellm is not installed (the theoryx[llm] extra)")
    full: dict[str, Any] = json.loads(path.read_bytes())
    return full


def test_trimming_keeps_every_price_of_the_full_map(monkeypatch: pytest.MonkeyPatch) -> None:
    full = full_map()
    trimmed = pricing.trim_cost_map(full)
    names = set(full) | {f"{e['litellm_provider']}/{m}" for m, e in full.items()
                         if isinstance(e, dict) and isinstance(e.get("litellm_provider"), str)}
    rates = pricing.Rates()

    def prices(table: dict[str, Any]) -> dict[str, pricing.ModelPrice | None]:
        monkeypatch.setattr(pricing, "_cost_map", table)
        return {name: pricing.model_price(name, rates) for name in names}

    assert prices(trimmed) == prices(full)
    assert sum(p is not None for p in prices(trimmed).values()) > 1000
    assert len(json.dumps(trimmed)) < len(json.dumps(full)) / 2


def test_the_vendored_map_is_the_trimmed_map_of_its_litellm_version() -> None:
    from importlib.metadata import version

    raw = json.loads((Path(pricing.__file__).parent / pricing.VENDORED_COST_MAP).read_text())
    installed = version("litellm") if pricing.cost_map_path() is not None else None
    if installed != raw["source"]["version"]:
        pytest.skip(f"vendored from litellm {raw['source']['version']}, installed {installed}: "
                    "refresh with scripts/vendor_cost_map.py")
    assert raw["models"] == pricing.trim_cost_map(full_map())


def test_vendored_and_installed_prices_agree_for_a_common_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """gpt-4o-mini's price has not changed across LiteLLM versions: a wrong file or a broken
    loader shows here even when the versions differ."""
    full = full_map()
    monkeypatch.setattr(pricing, "_cost_map", pricing.vendored_cost_map())
    vendored = pricing.model_price("gpt-4o-mini", pricing.Rates())
    monkeypatch.setattr(pricing, "_cost_map", full)
    assert vendored == pricing.model_price("gpt-4o-mini", pricing.Rates())
    assert vendored is not None and vendored.input_per_token == Decimal("1.5e-7")
