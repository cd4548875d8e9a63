"""Specs and the registry: validation messages name the file and field; search path; cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from theoryx_testing import REGISTRY

from theoryx.errors import ProcessorNotFound, SpecError
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry, load_file, search_path

GOOD = """\
ref: t/echo@1
description: test
image:
  dockerfile: echo/Dockerfile
command: ["python3", "/app/run.py"]
runtime: {cpu: 1, memory: 128, timeout: 10, gpu: null, network: false}
adapter:
  modal: {stub_name: echo}
secrets: [API_KEY]
inputs: {type: object}
outputs:
  - {path: out.txt, mime: text/plain}
"""


def write_spec(root: Path, text: str, rel: str = "t/echo@1.yaml") -> Path:
    path = root / "processors" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    (root / "processors" / "t" / "echo").mkdir(exist_ok=True)
    (root / "processors" / "t" / "echo" / "Dockerfile").write_text("FROM scratch\n")
    path.write_text(text)
    return path


def test_shipped_litellm_spec_loads() -> None:
    spec = Registry((REGISTRY,)).load(Ref.parse("llm/litellm@1"))
    assert spec.inputs_schema["required"] == ["messages"]
    assert [o.path for o in spec.outputs] == ["text/response.txt", "metadata.json"]
    assert spec.modal_stub == "theoryx-llm-litellm"


def test_good_spec_loads_with_all_seed_fields(tmp_path: Path) -> None:
    spec = load_file(write_spec(tmp_path, GOOD))
    assert spec.runtime.memory == 128 and spec.runtime.timeout == 10 and spec.runtime.network is False
    assert spec.secrets == ("API_KEY",) and spec.modal_stub == "echo"
    assert spec.command == ("python3", "/app/run.py")


@pytest.mark.parametrize("bad, field", [
    (GOOD.replace("memory: 128", "memory: lots"), "runtime.memory"),
    (GOOD.replace("timeout: 10", "timeout: -1"), "runtime.timeout"),
    (GOOD.replace("network: false", "network: maybe"), "runtime.network"),
    (GOOD.replace("dockerfile: echo/Dockerfile", "dockerfile: nope/Dockerfile"), "image.dockerfile"),
    (GOOD.replace("dockerfile: echo/Dockerfile", "ref: python:3.11"), "image.ref"),
    (GOOD.replace("inputs: {type: object}", "inputs: {type: 12}"), "inputs.type"),
    (GOOD.replace("- {path: out.txt, mime: text/plain}", "- {path: ../out.txt, mime: text/plain}"), "outputs[0].path"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [api key]"), "secrets[0]"),
    # a host value would change what runs without changing the key (the seed, the write prefix,
    # the loader, a keyed env value): reserved names and names the spec's env sets are refused
    (GOOD.replace("secrets: [API_KEY]", "secrets: [API_KEY, THEORYX_SEED]"), "secrets[1]"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [THEORYX_WRITE_PREFIX]"), "secrets[0]"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [LD_PRELOAD]"), "secrets[0]"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [PATH]"), "secrets[0]"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [PYTHONPATH]"), "secrets[0]"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [GLIBC_TUNABLES]"), "secrets[0]"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [LC_ALL]"), "secrets[0]"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [TZ]"), "secrets[0]"),
    (GOOD.replace("secrets: [API_KEY]", "secrets: [API_KEY]\nenv: {API_KEY: keyed}"), "secrets[0]"),
    (GOOD + "colour: blue\n", "colour"),
    (GOOD.replace("command: [\"python3\", \"/app/run.py\"]", "command: python3 run.py"), "command"),
    (GOOD.replace("ref: t/echo@1", "ref: t/other@1"), "ref"),
])
def test_malformed_spec_names_file_and_field(tmp_path: Path, bad: str, field: str) -> None:
    path = write_spec(tmp_path, bad)
    with pytest.raises(SpecError) as info:
        Registry((tmp_path,)).load(Ref.parse("t/echo@1"))
    assert str(path) in info.value.message
    assert f"'{field}'" in info.value.message


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "ref: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(path) in info.value.message


def test_unknown_ref_names_every_registry_searched(tmp_path: Path) -> None:
    reg = Registry((tmp_path / "a", tmp_path / "b"))
    with pytest.raises(ProcessorNotFound) as info:
        reg.locate(Ref.parse("x/y@1"))
    assert str(tmp_path / "a") in info.value.message and str(tmp_path / "b") in info.value.message


def test_search_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from theoryx.spec.registry import installed_registry

    assert search_path() == (installed_registry(),)
    (tmp_path / "registry" / "processors").mkdir(parents=True)
    assert search_path() == ((tmp_path / "registry").resolve(),)
    monkeypatch.setenv("THEORYX_REGISTRY", "/x")
    assert search_path() == (Path("/x"),)
    assert search_path("/y") == (Path("/y"),)


def test_spec_cache_serves_a_parsed_spec_without_yaml(tmp_path: Path) -> None:
    from theoryx.store.db import open_db

    db = open_db(tmp_path / "db")
    path = write_spec(tmp_path, GOOD)
    first = load_file(path, db)
    import theoryx.spec.registry as registry_mod

    def no_parse(*_: object) -> None:
        raise AssertionError("YAML parsed on a cached load")

    orig = registry_mod.parse
    registry_mod.parse = no_parse  # type: ignore[assignment]
    try:
        assert load_file(path, db) == first
    finally:
        registry_mod.parse = orig
    path.write_text(GOOD.replace("memory: 128", "memory: 256"))
    assert load_file(path, db).runtime.memory == 256


def test_registry_cli_ls_show_validate(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    shutil.copytree(REGISTRY / "processors", tmp_path / "processors")
    r = CliRunner()
    base = ["--home", str(tmp_path / "h"), "--registry", str(tmp_path)]
    out = r.invoke(cli, [*base, "registry", "ls"])
    assert out.exit_code == 0 and "llm/litellm@1" in out.stdout and "data/textstats@1" in out.stdout
    for line in out.stdout.splitlines():     # a long description is cut at a word, and says so
        described = line[25:]
        assert len(described) <= 80 and (described.endswith("…") or " " not in described[-2:]), line
    assert "(standard library…" in out.stdout, out.stdout
    out = r.invoke(cli, [*base, "registry", "show", "llm/litellm@1"])
    assert out.exit_code == 0 and "spec digest b3:" in out.stdout
    out = r.invoke(cli, [*base, "registry", "validate"])
    assert out.exit_code == 0, out.output
    write_spec(tmp_path, GOOD.replace("memory: 128", "memory: x"))
    out = r.invoke(cli, [*base, "registry", "validate"])
    assert out.exit_code == 1 and "INVALID  t/echo@1" in out.stdout


def test_a_timeout_over_a_week_is_refused_naming_the_field() -> None:
    from theoryx.errors import SpecError
    from theoryx.spec.model import MAX_TIMEOUT_S, ProcessorSpec

    base = {"ref": "t/x@1", "image": {"ref": "example.invalid/x@sha256:" + "0" * 64}, "inputs": {"type": "object"},
            "outputs": [{"path": "o.txt", "mime": "text/plain"}]}
    src = Path("x@1.yaml")
    longest = ProcessorSpec.from_mapping({**base, "runtime": {"timeout": MAX_TIMEOUT_S}}, src)
    assert longest.runtime.timeout == MAX_TIMEOUT_S
    with pytest.raises(SpecError, match=r"runtime\.timeout"):
        ProcessorSpec.from_mapping({**base, "runtime": {"timeout": 10**30}}, src)


@pytest.mark.parametrize("setting", ["{tmp}/missing", os.pathsep, "{tmp}/afile"], ids=["missing", "empty", "file"])
def test_a_registry_setting_naming_no_directory_is_a_usage_error(tmp_path: Path, setting: str) -> None:
    """A typo in --registry must not read as an empty registry ("0 valid, 0 invalid", exit 0)."""
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    (tmp_path / "afile").write_text("")
    base = ["--home", str(tmp_path / "h"), "--registry", setting.format(tmp=tmp_path)]
    for args in (["registry", "validate"], ["registry", "ls"], ["run", "--adapter", "mock", "--ref", "llm/litellm@1"]):
        out = CliRunner().invoke(cli, [*base, *args])
        assert out.exit_code == 2 and "Error: no registry: " in out.stderr, (args, out.output)
    # a search path skips entries that do not exist, as PATH does
    assert Registry.from_option(f"{tmp_path}/missing{os.pathsep}{REGISTRY}").roots[1] == REGISTRY


@pytest.mark.parametrize("rel", ["t/echo.yaml", "t/Echo@1.yaml", "t/echo@1@2.yml", "T/echo@1.yaml", "echo@1.yaml"],
                         ids=["no-version", "uppercase", "two-ats", "bad-namespace", "no-namespace"])
def test_validate_names_a_spec_file_no_ref_can_find(tmp_path: Path, rel: str) -> None:
    """A misnamed spec file was skipped in silence: ``validate`` said all was well, and every
    ``run`` of the ref its author meant said ``ERR_PROCESSOR_NOT_FOUND``."""
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    write_spec(tmp_path, GOOD)
    write_spec(tmp_path, GOOD, rel=rel)
    (tmp_path / "processors" / "t" / "echo" / "config.yaml").write_text("a processor's own file\n")
    base = ["--home", str(tmp_path / "h"), "--registry", str(tmp_path)]
    out = CliRunner().invoke(cli, [*base, "registry", "validate"])
    assert out.exit_code == 1, out.output
    assert f"INVALID  {tmp_path / 'processors' / rel}: not a spec any ref finds" in out.stdout, out.stdout
    assert "ok       t/echo@1" in out.stdout and "1 valid, 1 invalid" in out.stdout, out.stdout
