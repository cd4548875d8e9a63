"""Adapter options are validated up front, before anything is written (issue 10, defects 8 and 11).

Every adapter declares its options (``OPTIONS``, an :class:`~theoryx.adapters.base.OptionSchema`);
``theoryx.adapters.check_options`` checks them without creating the adapter (no Docker, no Modal
import) and the miss path calls it before it stores a blob, creates a workspace or reserves money.
Unknown keys, wrong types and out-of-range values are ``ERR_ADAPTER_OPTIONS`` (a usage error,
exit 2); so is an option that would open a sandbox switch the spec keeps closed (``network``
beyond ``none`` under ``runtime.network: false``): adapter options never enter the memo key.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import HELLO, REGISTRY, REPO, Cli, hello_args

import theoryx
from theoryx import adapters
from theoryx.errors import AdapterOptionsError, UsageError
from theoryx.spec.model import ProcessorSpec
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry

BAD_MOCK = [
    {"cost_usd": "abc"},
    {"exit_code": "x"},
    {"cost_usd": 1e308},
    {"cost_usd": -0.5},
    {"cost_usd": math.nan},
    {"cost_usd": math.inf},
    {"cost_usd": True},
    {"exit_code": 3.5},
    {"exit_code": 256},
    {"exit_code": -1},
    {"timeout": 0},
    {"timeout": 1e30},
    {"bogus": 1},
    {"cost_usd": 0.1, "exitcode": 1},
]
BAD_LOCAL = [{"timeout": 1e30}, {"timeout": -1}, {"timeout": "3"}, {"timeout": math.inf}, {"network": "wifi"},
             {"network": 1}, {"retries": 1}]
BAD_MODAL = [{"timeout": 1e30}, {"timeout": 86_400}, {"timeout": 0}, {"region": "eu"}]


def spec(ref: str = "llm/litellm@1", registry: Path = REGISTRY) -> ProcessorSpec:
    return Registry.from_option(str(registry)).load(Ref.parse(ref))


def blobs(home: Path) -> list[str]:
    root = home / "cas-v1" / "blobs"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def workspaces(home: Path) -> list[str]:
    work = home / "work-v1"
    return sorted(p.name for p in work.iterdir()) if work.exists() else []


# -- the schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, bad", [*(("mock", b) for b in BAD_MOCK), *(("local", b) for b in BAD_LOCAL),
                                       *(("modal", b) for b in BAD_MODAL)])
def test_bad_options_are_refused_with_a_stable_code_and_the_option_named(name: str, bad: dict[str, Any]) -> None:
    with pytest.raises(AdapterOptionsError) as info:
        adapters.check_options(name, bad, spec())
    err = info.value
    assert err.code == "ERR_ADAPTER_OPTIONS" and isinstance(err, UsageError) and err.exit_code == 2
    assert err.option == "adapter_options"
    assert f"{name} adapter option" in err.message
    assert any(key in err.message for key in bad), err.message
    print(f"{name} {bad!r}: {err.message}")


def test_unknown_keys_are_listed_with_the_allowed_ones() -> None:
    with pytest.raises(AdapterOptionsError) as info:
        adapters.check_options("mock", {"zeta": 1, "alpha": 2})
    assert info.value.message == ("unknown mock adapter option(s): alpha, zeta "
                                  "(allowed: cost_usd, exit_code, timeout)")


def test_good_options_are_normalised() -> None:
    assert adapters.check_options("mock", {"cost_usd": 1, "exit_code": 3.0}) == {"cost_usd": 1.0, "exit_code": 3}
    assert adapters.check_options("local", {"timeout": 2, "network": "none"}, spec()) == {
        "timeout": 2.0, "network": "none"}
    assert adapters.check_options("modal", {}) == {}
    with pytest.raises(AdapterOptionsError, match="must be a JSON object"):
        adapters.check_options("mock", ["cost_usd"])  # type: ignore[arg-type]


def test_checking_options_imports_neither_docker_nor_modal() -> None:
    code = ("import sys, theoryx.adapters as a\n"
            "for name in ('mock', 'local', 'modal'):\n"
            "    try:\n"
            "        a.check_options(name, {'timeout': 1e30})\n"
            "    except Exception as exc:\n"
            "        assert exc.code == 'ERR_ADAPTER_OPTIONS', exc\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'docker', 'modal', 'requests'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- before anything is written ---------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_MOCK[:4])
def test_a_bad_mock_option_writes_no_blob_no_workspace_no_reservation(home: Path, bad: dict[str, Any]) -> None:
    from theoryx.budget import plans
    from theoryx.store.db import open_db

    theoryx.run("llm/litellm@1", inputs=HELLO, home=home, adapter="mock", registry=str(REGISTRY))
    db = open_db(home / "db-v1")
    plans.create(db, "p", 10_000_000)
    before = blobs(home)
    with pytest.raises(AdapterOptionsError) as info:
        theoryx.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": "other"}]}, home=home,
                    adapter="mock", registry=str(REGISTRY), adapter_options=bad, plan="p")
    after = blobs(home)
    print(f"{bad!r}: blobs before {len(before)}, after {len(after)}; {info.value.message}")
    assert after == before
    assert workspaces(home) == []
    assert [r for _, r in db.items("reservations")] == []
    p = plans.get(db, "p")
    assert (p.totals.spent_micros, p.totals.reserved_micros) == (0, 0)


def test_a_bad_local_option_fails_before_docker_is_even_contacted(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path, net_registry: Path) -> None:
    # No engine at that socket: any call to the adapter would be ERR_DOCKER_UNAVAILABLE instead.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    for bad in ({"timeout": 1e30}, {"network": "bridge"}, {"network": "host"}):
        with pytest.raises(AdapterOptionsError) as info:
            theoryx.run("test/netfalse@1", inputs={}, home=home, adapter="local", registry=str(net_registry),
                        adapter_options=bad)
        print(f"local {bad!r}: {info.value.message}")
    assert blobs(home) == [] and workspaces(home) == []


def test_the_cli_reports_bad_options_as_one_usage_error(cli: Cli) -> None:
    for bad in ('{"cost_usd":"abc"}', '{"exit_code":"x"}', '{"cost_usd":1e308}'):
        body = cli.run_json(*hello_args("--adapter-opts-json", bad))
        assert body["_exit"] == 2 and body["error"]["code"] == "ERR_ADAPTER_OPTIONS", body
        res = cli("run", *hello_args("--adapter-opts-json", bad))
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert res.stderr.startswith("Error: mock adapter option"), res.stderr


def test_the_console_prints_no_traceback(home: Path) -> None:
    env = {**os.environ, "THEORYX_HOME": str(home), "THEORYX_REGISTRY": str(REGISTRY)}
    out = subprocess.run([sys.executable, "-m", "theoryx", "run", *hello_args("--adapter-opts-json",
                                                                             '{"exit_code": "x"}')],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "mock adapter option 'exit_code' must be an integer >= 0 and <= 255" in out.stderr


# -- the sandbox is not relaxed outside the key (defect 11) -------------------------------------


NET_SPEC = """\
ref: test/net{flag}@1
image:
  dockerfile: p/Dockerfile
command: ["true"]
runtime: {{network: {flag}}}
inputs: {{type: object}}
outputs: []
"""


@pytest.fixture
def net_registry(tmp_path: Path) -> Path:
    pdir = tmp_path / "reg" / "processors" / "test"
    (pdir / "p").mkdir(parents=True)
    (pdir / "p" / "Dockerfile").write_text("FROM scratch\n")
    for flag in ("true", "false"):
        (pdir / f"net{flag}@1.yaml").write_text(NET_SPEC.format(flag=flag))
    return tmp_path / "reg"


@pytest.mark.parametrize("network", ["bridge", "host"])
def test_an_option_that_opens_the_network_is_refused_where_the_spec_closes_it(net_registry: Path,
                                                                              network: str) -> None:
    closed = spec("test/netfalse@1", net_registry)
    with pytest.raises(AdapterOptionsError) as info:
        adapters.check_options("local", {"network": network}, closed)
    msg = info.value.message
    print(msg)
    assert f"network={network!r}" in msg and "runtime.network: false" in msg and "memo key" in msg
    assert adapters.check_options("local", {"network": "none"}, closed) == {"network": "none"}


def test_the_network_option_is_free_where_the_spec_opens_it(net_registry: Path) -> None:
    opened = spec("test/nettrue@1", net_registry)
    for network in ("none", "bridge", "host"):
        assert adapters.check_options("local", {"network": network}, opened) == {"network": network}


def test_the_local_adapter_refuses_it_too_when_called_directly(net_registry: Path) -> None:
    from theoryx.adapters.local.adapter import Options

    with pytest.raises(AdapterOptionsError):
        Options.parse(spec("test/netfalse@1", net_registry), {"network": "bridge"})
    assert Options.parse(spec("test/nettrue@1", net_registry), {}).network == "bridge"
    assert Options.parse(spec("test/netfalse@1", net_registry), {}).network == "none"


def test_no_option_of_any_adapter_touches_another_sandbox_switch() -> None:
    """The sandbox switches (memory, cpu, pids, tmpfs, gpu, read-only root...) come from the spec
    only: the options an adapter accepts are exactly these."""
    from theoryx.adapters.local.adapter import OPTIONS as LOCAL
    from theoryx.adapters.mock import OPTIONS as MOCK
    from theoryx.adapters.modal.adapter import OPTIONS as MODAL

    assert LOCAL.names == ("network", "timeout")
    assert [o.sandbox for o in LOCAL.options if o.sandbox] == ["runtime.network"]
    assert MODAL.names == ("timeout",) and MOCK.names == ("cost_usd", "exit_code", "timeout")
    print(json.dumps({s.adapter: s.names for s in (LOCAL, MODAL, MOCK)}))


def test_bad_options_are_refused_on_a_cache_hit_too(tmp_path: Path) -> None:
    from theoryx_testing import HELLO, REGISTRY

    import theoryx
    from theoryx.errors import AdapterOptionsError

    home = tmp_path / "home"
    assert theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY)).cache == "miss"
    with pytest.raises(AdapterOptionsError):
        theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY),
                    adapter_options={"cost_usd": "abc"})
