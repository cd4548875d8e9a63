"""The click-free path of ``theoryx run`` agrees with the click command, byte for byte.

Both call :func:`theoryx.cli.runcore.run_command`; these tests hold the parsers (one table,
:data:`theoryx.cli.options.RUN_OPTIONS`) and the outputs to that: same stdout, stderr and exit
code for hits, misses, errors and every option, and anything the fast path cannot parse is left
to click before anything is read or written.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from theoryx_testing import HELLO, REGISTRY, REPO, Cli, hello_args

from theoryx.cli import fastpath
from theoryx.cli.options import RUN_OPTIONS
from theoryx.store import executions
from theoryx.store.handle import open_stores

IDS = re.compile(r"\b[0-9a-hjkmnp-tv-z]{26}\b")
MS = re.compile(r"(\d+) ms\b|\"duration_ms\": \d+")


def normal(text: str) -> str:
    """Execution ids and durations differ between two runs; nothing else may."""
    return MS.sub("<ms>", IDS.sub("<id>", text))


def fast(home: Path, *args: str, stdin: str = "") -> tuple[int | None, str, str]:
    """``try_run`` in-process with real byte streams; (exit code or None, stdout, stderr)."""
    out, err = io.TextIOWrapper(io.BytesIO(), write_through=True), io.TextIOWrapper(io.BytesIO(), write_through=True)
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.TextIOWrapper(io.BytesIO(stdin.encode())), out, err
    try:
        code = fastpath.try_run(["--home", str(home), "--registry", str(REGISTRY), "run", *args])
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()  # type: ignore[attr-defined]


def slow(cli: Cli, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    res = cli("run", *args, input=stdin)
    return res.exit_code, res.stdout, res.stderr


def both(tmp_path: Path, *args: str, stdin: str = "", prime: bool = False) -> tuple[tuple[object, ...], ...]:
    """The same command on the fast path and on click, each in a fresh home (primed with one
    click run of the same command when ``prime``), normalised."""
    results = []
    for name in ("fast", "click"):
        home = tmp_path / name
        cli = Cli(home, REGISTRY)
        if prime:
            cli("run", *args, input=stdin)
        code, out, err = fast(home, *args, stdin=stdin) if name == "fast" else slow(cli, *args, stdin=stdin)
        results.append((code, normal(out), normal(err)))
    return tuple(results)


@pytest.mark.parametrize("extra", [[], ["--json"], ["--seed", "3", "--plan", "p"], ["--write-prefix=/artifacts/x/"],
                                   ["--stream"], ["--json", "--stream"]])
@pytest.mark.parametrize("prime", [False, True], ids=["miss", "hit"])
def test_fast_and_click_print_the_same(tmp_path: Path, extra: list[str], prime: bool) -> None:
    f, c = both(tmp_path, *hello_args(*extra), prime=prime)
    assert f == c
    assert f[0] == 0
    assert ("hit" if prime else "miss") in f[1]


@pytest.mark.parametrize("args", [
    ["--adapter", "mock", "--ref", "llm/litellm@1", "--write-prefix", "/artifacts/x"],
    ["--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", "{"],
    ["--adapter", "mock", "--ref", "no/such@1"],
    ["--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", '{"messages": 3}'],
    ["--adapter", "mock", "--ref", "llm/litellm@1", "--attach", "a=/no/such/file"],
    ["--adapter", "mock", "--ref", "llm/litellm@1", "--build"],
])
@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_errors_are_the_same_on_both_paths(tmp_path: Path, args: list[str], as_json: list[str]) -> None:
    f, c = both(tmp_path, *args, *as_json)
    assert f == c
    assert f[0] in (1, 2) and f[2].startswith("Error: ")
    if as_json:
        assert json.loads(f[1])["status"] == "error"


def test_inputs_from_stdin_are_read_once_and_the_same(tmp_path: Path) -> None:
    f, c = both(tmp_path, "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-file", "-", stdin=json.dumps(HELLO))
    assert f == c and f[0] == 0 and "Mock response to 1 messages" in f[1]


def test_save_dir_writes_the_same_files(tmp_path: Path) -> None:
    for name in ("fast", "click"):
        home, out = tmp_path / name, tmp_path / f"{name}-out"
        if name == "fast":
            assert fast(home, *hello_args("--save-dir", str(out)))[0] == 0
        else:
            assert slow(Cli(home, REGISTRY), *hello_args("--save-dir", str(out)))[0] == 0
    def tree(root: Path) -> dict[Path, bytes]:
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert tree(tmp_path / "fast-out") and tree(tmp_path / "fast-out") == tree(tmp_path / "click-out")


def test_an_unused_attachment_is_warned_about_once(tmp_path: Path) -> None:
    f = tmp_path / "unused.txt"
    f.write_text("x")
    code, _, err = fast(tmp_path / "home", *hello_args("--attach", f"u={f}"))
    assert code == 0
    assert err.count("Warning: attachment 'u' is not referenced") == 1


@pytest.mark.parametrize("args", [
    ["--help"], ["-h"], ["--bogus"], ["--seed", "x"], ["--adapter", "cloud"], ["--seed", "1", "--seed", "2"],
    ["--json=1"], ["--save-first", "."],
])
def test_what_click_must_answer_is_left_to_it_before_anything_is_written(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "home"
    assert fast(home, *hello_args(*args)) == (None, "", "")
    assert not home.exists()


def test_a_missing_ref_or_a_home_that_is_a_file_is_left_to_click(tmp_path: Path) -> None:
    assert fast(tmp_path / "h", "--adapter", "mock")[0] is None
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert fastpath.try_run(["--home", str(a_file), "run", *hello_args()]) is None


def test_the_salt_from_the_environment_enters_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("THEORYX_SALT", "s1")
    assert json.loads(fast(home, *hello_args("--json"))[1])["cache"] == "miss"
    assert json.loads(fast(home, *hello_args("--json"))[1])["cache"] == "hit"
    monkeypatch.setenv("THEORYX_SALT", "s2")
    assert json.loads(fast(home, *hello_args("--json"))[1])["cache"] == "miss"
    monkeypatch.setenv("THEORYX_SALT", "s1")
    assert json.loads(fast(home, *hello_args("--json", "--salt", "s2"))[1])["cache"] == "hit"


def test_a_miss_is_prepared_once_and_recorded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.pipeline import session

    calls: list[str] = []
    real = session.prepare

    def counting(*a: object, **kw: object) -> object:
        calls.append("prepare")
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "prepare", counting)
    home = tmp_path / "home"
    assert fast(home, *hello_args())[0] == 0
    assert calls == ["prepare"]
    assert len(list(executions.latest(open_stores(home).db))) == 1


def test_the_click_command_has_exactly_the_options_of_the_table() -> None:
    from theoryx.cli.run import run

    params = {p.name: p for p in run.params}
    assert list(params) == [o.dest for o in RUN_OPTIONS]
    for o in RUN_OPTIONS:
        p = params[o.dest]
        assert p.opts == [o.flag] and p.required == o.required
        assert p.multiple == (o.kind == "multiple") and bool(getattr(p, "is_flag", False)) == (o.kind == "flag")
        if o.default is not None:
            assert p.default == o.default


def test_a_hit_through_the_console_entry_never_imports_click(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Cli(home, REGISTRY)("run", *hello_args())
    code = ("import sys; from theoryx.cli.main import main; sys.argv = ['theoryx', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('click' in sys.modules, 'jsonschema' in sys.modules, 'yaml' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, "--home", str(home), "--registry", str(REGISTRY), "run",
                           *hello_args()], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Cache: hit" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "False False False"


@pytest.mark.parametrize("argv", [["--home", "", "run"], ["--home=", "run"], ["--registry", "", "run"],
                                  ["run", "--plan", ""], ["run", "--save-first", ""]])
def test_an_empty_value_is_left_to_click_which_refuses_it(argv: list[str]) -> None:
    """`theoryx --home '' run ...` went to THEORYX_HOME or the default home on the fast path while
    click refused it: an empty value now always takes the click path."""
    i = argv.index("run")
    full = [*argv[: i + 1], *hello_args(), *argv[i + 1:]]
    assert fastpath.parse(full) is None
