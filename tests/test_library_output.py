"""Library code never prints; the CLI renders (issue 9, item 5).

The library reports notices through the ``theoryx`` logger (:mod:`theoryx.core.notices`) and
words its errors with Python parameter names; only :mod:`theoryx.cli` prints, with the
``Warning: ``/``Note: `` prefixes and its flags, exactly as it always did.
"""

from __future__ import annotations

import ast
import importlib
import logging
from pathlib import Path

import pytest
from notices_testing import captured_notices, texts
from theoryx_testing import REPO, Cli

from theoryx.adapters.local import docker_client
from theoryx.budget import plans
from theoryx.budget.charging import Charging
from theoryx.cli import messages as cli_errors
from theoryx.core import notices
from theoryx.errors import (
    AdapterError,
    DockerUnavailable,
    ModalError,
    PlanNotFound,
    TheoryxError,
    UsageError,
    WritePrefixError,
)
from theoryx.pipeline import writeprefix
from theoryx.provenance import keys
from theoryx.store.handle import open_stores

# -- no library module prints -------------------------------------------------------------------

LIBRARY = sorted(p for p in (REPO / "theoryx").rglob("*.py") if p.relative_to(REPO / "theoryx").parts[0] != "cli")
CAS = sorted((REPO / "cas").rglob("*.py"))
STREAMS = ("stdout", "stderr", "__stdout__", "__stderr__")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def output_uses(source: str) -> list[tuple[int, str]]:
    """Where ``source`` prints or touches the process's stdout/stderr: (line, what) pairs."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append((node.lineno, "print("))
        elif (isinstance(node, ast.Attribute) and node.attr in STREAMS
              and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            found.append((node.lineno, f"sys.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            found.extend((node.lineno, f"from sys import {a.name}") for a in node.names if a.name in STREAMS)
        elif (isinstance(node, ast.Attribute) and node.attr == "echo"
              and isinstance(node.value, ast.Name) and node.value.id == "click"):
            found.append((node.lineno, "click.echo"))
    return sorted(found)


def test_the_checker_finds_every_way_of_printing() -> None:
    source = ("import sys\nfrom sys import stderr\nprint('x')\nsys.stderr.write('y')\n"
              "f('z', file=sys.stdout)\nclick.echo('w')\nsys.__stderr__.flush()\nsys.argv\n")
    assert output_uses(source) == [(2, "from sys import stderr"), (3, "print("), (4, "sys.stderr"),
                                   (5, "sys.stdout"), (6, "click.echo"), (7, "sys.__stderr__")]


def test_library_and_cas_modules_are_all_checked() -> None:
    names = {module_name(p) for p in LIBRARY}
    assert {"theoryx.budget.charging", "theoryx.adapters.local.adapter", "theoryx.adapters.modal.adapter",
            "theoryx.core.notices", "theoryx.errors"} <= names
    assert not any(n.startswith("theoryx.cli") for n in names)
    assert CAS


ROUTERS = {"theoryx/adapters/mock.py": "_printed_into"}
"""Modules allowed to touch ``sys.stdout``/``sys.stderr`` in one function only, never to write to
them: the mock adapter puts a router in their place while in-process processor code runs, so
that what a ``mock.py`` prints goes to that run's log capture instead of theoryx's output."""


@pytest.mark.parametrize("path", LIBRARY + CAS, ids=lambda p: str(p.relative_to(REPO)))
def test_library_module_never_prints(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    uses = output_uses(source)
    router = ROUTERS.get(str(path.relative_to(REPO)))
    if router is not None:
        fn = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == router)
        assert fn.end_lineno is not None
        uses = [(line, what) for line, what in uses
                if not (what in ("sys.stdout", "sys.stderr") and fn.lineno <= line <= fn.end_lineno)]
    assert uses == []


def test_every_library_module_imports() -> None:
    """The modules checked above are the ones that run (``__main__`` is the console entry)."""
    for path in LIBRARY:
        if path.stem != "__main__":
            importlib.import_module(module_name(path))


# -- notices: stderr through the CLI, log records for a Python caller ---------------------------


def test_cli_shows_notices_on_stderr_with_their_prefixes(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    create = plans.create

    def noisy(*args: object, **kwargs: object) -> plans.Plan:
        notices.warning("w text")
        notices.note("n text")
        notices.progress("theoryx: p text")
        return create(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(plans, "create", noisy)
    res = cli("plan", "create", "noisy")
    assert res.exit_code == 0
    assert res.stderr == "Warning: w text\nNote: n text\ntheoryx: p text\n"
    assert res.stdout == "Created plan 'noisy' with limit none\n"   # notices never reach stdout


def test_a_python_caller_gets_notes_as_log_records_with_their_kind(home: Path) -> None:
    stores = open_stores(home)
    with captured_notices() as seen:
        Charging(stores, "fresh", "01exec", {}).hit(5, "01source")
        Charging(stores, "fresh", "01exec2", {}).hit(5, "01source")   # exists now: no note
    assert texts(seen, "note") == ["plan 'fresh' did not exist; created it without a limit (tracking only)"]
    assert [(r.name, r.levelno, getattr(r, "theoryx_kind", None)) for r in seen] == [("theoryx", logging.INFO, "note")]


def test_notice_kinds_map_to_log_levels() -> None:
    with captured_notices() as seen:
        notices.warning("a")
        notices.note("b")
        notices.progress("c")
    assert [(r.levelno, getattr(r, "theoryx_kind", None), r.getMessage()) for r in seen] == [
        (logging.WARNING, "warning", "a"), (logging.INFO, "note", "b"), (logging.INFO, "progress", "c")]


# -- errors: parameters for Python callers, flags on the command line ---------------------------


def test_write_prefix_error_names_the_parameter_and_the_cli_the_flag() -> None:
    with pytest.raises(WritePrefixError) as info:
        writeprefix.check("/artifacts/outputs")
    exc = info.value
    assert exc.message == "write_prefix must end with /" and exc.option == "write_prefix"
    assert exc.to_dict() == {"code": "ERR_WRITE_PREFIX", "message": "write_prefix must end with /"}
    assert cli_errors.message(exc) == "--write-prefix must end with /"
    assert cli_errors.to_dict(exc) == {"code": "ERR_WRITE_PREFIX", "message": "--write-prefix must end with /"}


def test_every_write_prefix_message_renders_as_the_cli_always_printed_it() -> None:
    cases = {
        "/tmp/out/": "--write-prefix must start with /artifacts/",
        "/artifacts/outputs": "--write-prefix must end with /",
        "/artifacts/": "--write-prefix must name a directory below /artifacts/",
        "/artifacts/a//b/": "--write-prefix must not contain empty segments (//)",
        "/artifacts/a/../b/": "--write-prefix must not contain . or .. segments",
        "/artifacts/a\\b/": "--write-prefix must not contain backslashes, NUL or newlines",
        "/artifacts/inputs/x/": "--write-prefix must not be inside /artifacts/inputs/ or /artifacts/execution/",
        "/artifacts/{run}/": "--write-prefix may only use the placeholder {execution_id}",
        # a segment no directory can have: every local run failed as an engine error (ERR_ADAPTER)
        "/artifacts/" + "x" * 256 + "/": "--write-prefix must not have a segment longer than 255 bytes "
                                         "(no directory of a container can be named so)",
        "/artifacts/" + "é" * 128 + "/": "--write-prefix must not have a segment longer than 255 bytes "
                                         "(no directory of a container can be named so)",
        "/artifacts/" + "x" * 240 + "{execution_id}/": "--write-prefix must not have a segment longer than 255 "
                                                       "bytes (no directory of a container can be named so)",
        "/artifacts/" + ("x" * 200 + "/") * 6: "--write-prefix must be at most 1024 bytes long",
    }
    for prefix, cli_text in cases.items():
        with pytest.raises(WritePrefixError) as info:
            writeprefix.check(prefix)
        assert "--" not in info.value.message, prefix
        assert cli_errors.message(info.value) == cli_text, prefix


def test_a_write_prefix_segment_of_255_bytes_is_accepted() -> None:
    writeprefix.check("/artifacts/" + "x" * 255 + "/")
    writeprefix.check("/artifacts/" + "x" * 229 + "{execution_id}/")       # 255 once expanded


def test_keygen_without_force_python_says_force_true_and_the_cli_says_force(
        tmp_path: Path, home: Path) -> None:
    path = tmp_path / "k" / "signing.key"
    keys.generate(path)
    with pytest.raises(UsageError) as info:
        keys.generate(path)
    assert info.value.message == f"{path} exists; refusing to overwrite a key (use force=True)"
    res = Cli(home, REPO / "registry")("keygen", "--out", str(path))
    assert res.exit_code == 2
    assert res.stderr == f"Error: {path} exists; refusing to overwrite a key (use --force)\n"


def test_missing_plan_python_message_is_neutral_and_the_cli_names_its_commands(cli: Cli, home: Path) -> None:
    with pytest.raises(PlanNotFound) as info:
        plans.get(open_stores(home).db, "nope")
    assert info.value.message == "no plan 'nope'; create it first"
    res = cli("plan", "show", "nope")
    assert res.exit_code == 1
    assert res.stderr == ("Error: no plan 'nope'; create it with `theoryx plan create nope --limit-usd X` "
                          "(see `theoryx plan ls`)\n")


def test_adapter_hints_name_the_parameter_value_and_the_cli_the_flag() -> None:
    exc = docker_client.unavailable("no socket")
    assert exc.message.endswith("run without Docker: adapter='mock'") and "--" not in exc.message
    assert cli_errors.message(exc) == ("Docker daemon not running or not installed (no socket)\n"
                                       "Hint: start it (bash scripts/docker-up.sh), or run without Docker: "
                                       "--adapter mock")
    assert isinstance(exc, DockerUnavailable)
    for cls, neutral, cli_text in (
        (ModalError, "from an amd64 host, or use adapter='local'", "from an amd64 host, or use --adapter local"),
        (AdapterError, "Container Toolkit, or run it on adapter='modal'",
         "Container Toolkit, or run it on --adapter modal"),
    ):
        assert cli_errors.message(cls(neutral, option="adapter")) == cli_text


def test_only_the_errors_own_option_is_rewritten() -> None:
    text = "write_prefix must differ from adapter='mock' and force=True"
    assert cli_errors.message(TheoryxError(text)) == text
    assert cli_errors.message(TheoryxError(text, option="force")) == (
        "write_prefix must differ from adapter='mock' and --force")
    assert cli_errors.message(TheoryxError("the current spec; pass current=True", option="current")) == (
        "the current spec; pass --current")
