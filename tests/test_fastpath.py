"""The click-free cache-hit fast path agrees with the click command."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from theoryx_testing import HELLO, REGISTRY, Cli, hello_args

from theoryx.cli import fastpath
from theoryx.store import executions
from theoryx.store.handle import open_stores


def test_every_run_option_is_classified() -> None:
    from theoryx.cli.run import run

    names = {opt for p in run.params for opt in p.opts}
    known = set(fastpath.VALUE_OPTIONS) | set(fastpath.FLAGS) | fastpath.DEFERRED
    assert names - known == set()


def fast(home: Path, *args: str) -> tuple[bool, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        handled = fastpath.try_run(["--home", str(home), "--registry", str(REGISTRY), "run", *args])
    return handled, buf.getvalue()


@pytest.mark.parametrize("extra", [[], ["--json"], ["--seed", "3", "--plan", "p"], ["--write-prefix=/artifacts/x/"]])
def test_fast_and_click_print_the_same(cli: Cli, home: Path, extra: list[str]) -> None:
    cli("run", *hello_args(*extra))
    handled, out = fast(home, *hello_args(*extra))
    assert handled
    slow = cli("run", *hello_args(*extra)).stdout
    strip = (lambda s: json.dumps({k: v for k, v in json.loads(s).items() if k not in ("execution_id", "index_path",
             "receipt_path", "meta")})) if "--json" in extra else (
        lambda s: "\n".join(ln for ln in s.splitlines() if not ln.startswith(("Execution:", "Cache:"))))
    assert strip(out) == strip(slow)
    assert "Cache: hit" in out or json.loads(out)["cache"] == "hit"


def test_a_miss_is_not_handled_and_records_nothing(home: Path) -> None:
    handled, out = fast(home, *hello_args())
    assert (handled, out) == (False, "")
    assert list(executions.latest(open_stores(home).db)) == []


@pytest.mark.parametrize("args", [
    ["--stream"], ["--no-cache"], ["--save-dir", "x"], ["--help"], ["--bogus"], ["--seed", "x"],
    ["--adapter", "cloud"], ["--ref", "a/b@1"],
])
def test_options_it_leaves_to_click(cli: Cli, home: Path, args: list[str]) -> None:
    cli("run", *hello_args())
    handled, _ = fast(home, *hello_args(*args))
    assert not handled


def test_errors_are_left_to_click(cli: Cli, home: Path) -> None:
    cli("run", *hello_args())
    for bad in (["--write-prefix", "/artifacts/x"], ["--inputs-json", "{"]):
        handled, _ = fast(home, "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", json.dumps(HELLO), *bad)
        assert not handled
    assert len(list(executions.latest(open_stores(home).db))) == 1


def test_environment_is_honoured_like_click(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THEORYX_SALT", "s1")
    cli("run", *hello_args())
    monkeypatch.setenv("THEORYX_SALT", "s2")
    handled, _ = fast(home, *hello_args())
    assert not handled  # another salt, another key


def test_inputs_from_stdin_are_left_to_click_which_reads_them_once(cli: Cli, home: Path) -> None:
    handled, _ = fast(home, "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-file", "-")
    assert not handled
    res = cli("run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-file", "-",
              input=json.dumps(HELLO))
    assert json.loads(res.stdout)["status"] == "success"
