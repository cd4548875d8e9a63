"""No traceback, ever; ``--json`` always prints one envelope (issue 10, defect 4 and 12).

Disk full, inputs nested absurdly deep, duplicate keys, a directory as an attachment and plain
bugs all end as one ``Error: ...`` line with a stable code and, under ``--json``, exactly one
JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from theoryx_testing import HELLO, REGISTRY, REPO, Cli, hello_args

import theoryx
from theoryx.errors import AttachmentError, InputsError
from theoryx.pipeline.request import MAX_INPUT_DEPTH


def run_cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(REGISTRY))
    return subprocess.run([sys.executable, "-m", "theoryx", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, input=stdin, timeout=120)


def one_error(proc: subprocess.CompletedProcess[str], code: str) -> dict[str, object]:
    """The process failed cleanly with ``code``: one JSON envelope, one error line, no traceback."""
    assert proc.returncode in (1, 2), (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    body: dict[str, object] = json.loads(lines[0])
    assert body["status"] == "error" and body["error"]["code"] == code, body  # type: ignore[index]
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return body


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [500, 5000, 100_000])
def test_inputs_nested_deeper_than_the_limit_are_err_inputs(tmp_path: Path, depth: int) -> None:
    text = json.dumps({"messages": HELLO["messages"], "x": "["}).replace('"["', "[" * depth + "]" * depth)
    body = one_error(run_cli(tmp_path / "h", "run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1",
                             "--inputs-file", "-", stdin=text), "ERR_INPUTS")
    assert f"deeper than {MAX_INPUT_DEPTH}" in str(body["error"])


ANY = """\
ref: test/any@1
description: Accepts any object.
image:
  ref: example.invalid/any@sha256:{zeros}
runtime: {{timeout: 60}}
inputs: {{type: object}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""


def test_python_inputs_nested_too_deep_are_refused_before_anything_recursive(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    (registry / "processors" / "test").mkdir(parents=True)
    (registry / "processors" / "test" / "any@1.yaml").write_text(ANY.format(zeros="0" * 64))
    with pytest.raises(InputsError, match="deeper than"):
        theoryx.run("test/any@1", inputs={"x": nested(5000)}, adapter="mock", home=tmp_path, registry=str(registry))
    # {"x": [[...1...]]}: the object is level 1, each list one more; nested(n) holds n - 1 lists.
    ok = theoryx.run("test/any@1", inputs={"x": nested(MAX_INPUT_DEPTH)}, adapter="mock", home=tmp_path,
                     registry=str(registry))
    assert ok.cache == "miss"
    with pytest.raises(InputsError, match="deeper than"):
        theoryx.run("test/any@1", inputs={"x": nested(MAX_INPUT_DEPTH + 1)}, adapter="mock", home=tmp_path,
                    registry=str(registry))


def test_duplicate_keys_in_inputs_are_err_inputs(tmp_path: Path) -> None:
    text = '{"messages": [{"role": "user", "content": "a", "content": "b"}]}'
    body = one_error(run_cli(tmp_path / "h", "run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1",
                             "--inputs-json", text), "ERR_INPUTS")
    assert "'content' twice" in str(body["error"])


def test_a_directory_as_an_attachment_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(AttachmentError, match="is a directory"):
        theoryx.run("llm/litellm@1", inputs=HELLO, attachments={"d": folder}, adapter="mock", home=tmp_path / "h",
                    registry=str(REGISTRY))


def test_an_unexpected_exception_is_one_line_err_internal_with_a_crash_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.pipeline import session

    def boom(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug in theoryx")

    monkeypatch.setattr(session, "prepare", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    res = Cli(tmp_path / "home", REGISTRY)("run", *hello_args("--json"))
    assert res.exit_code == 1
    body = json.loads(res.stdout)
    assert body["error"]["code"] == "ERR_INTERNAL"
    assert res.stderr.count("\n") == 1 and "ZeroDivisionError: a bug in theoryx" in res.stderr
    crash = next(tmp_path.glob("theoryx-crash-*.txt"))
    assert str(crash) in res.stderr and "Traceback" in crash.read_text() and "Traceback" not in res.stderr


def test_an_unexpected_exception_in_another_command_is_err_internal_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.store import stats

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("stats exploded")

    monkeypatch.setattr(stats, "usage", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))     # the crash file: not left in the machine's /tmp
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    cli = Cli(tmp_path / "home", REGISTRY)
    assert cli("plan", "create", "p", "--limit-usd", "1").exit_code == 0     # a home to read
    res = cli("du", "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["error"]["code"] == "ERR_INTERNAL"
    assert res.stderr.startswith("Error: internal error (RuntimeError: stats exploded)")
    assert len(list(tmp_path.glob("theoryx-crash-*.txt"))) == 1


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Path:
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_err_store_full_and_leaves_the_store_clean(tmp_path: Path, small_tmpfs: Path) -> None:
    home = small_tmpfs / "home"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(50 << 20))
    inputs = json.dumps({"messages": [{"role": "user", "content": {"$attach": "big"}}]})
    proc = run_cli(home, "run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", inputs,
                   "--attach", f"big={big}")
    body = one_error(proc, "ERR_STORE_FULL")
    message = str(body["error"])
    assert str(big) in message and str(50 << 20) in message and "bytes free" in message
    assert list((home / "cas-v1" / "tmp").iterdir()) == []          # nothing half-written
    verify = run_cli(home, "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The store still works once there is room: a run without the big attachment succeeds.
    ok = run_cli(home, "run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json",
                 json.dumps(HELLO))
    assert ok.returncode == 0 and json.loads(ok.stdout)["cache"] == "miss", ok.stderr
    print("disk-full runs: 1, tracebacks: 0, verify: clean")


@pytest.mark.parametrize("args", [
    ["verify", "--json", "--workers", "0"], ["ls", "--json", "--limit", "-1"], ["run", "--json", "--seed", "abc"],
    ["gc", "--json", "--max-age"], ["run", "--json", "--nope"], ["--home", "{afile}", "du", "--json"],
    ["gc", "--json", "--grace", "x"],
], ids=["range", "negative", "not an int", "missing value", "unknown option", "group option", "theoryx's own"])
def test_usage_errors_click_catches_still_print_one_json_envelope(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "afile").write_text("")
    argv = [a.format(afile=tmp_path / "afile") for a in args]
    proc = run_cli(tmp_path / "h", *argv)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    body = json.loads(lines[0])
    assert body["status"] == "error" and body["error"]["code"] == "ERR_USAGE" and body["error"]["message"]
    assert set(body) == {"status", "execution_id", "error"}, body     # the envelope every command prints
    assert "Error: " in proc.stderr
    plain = run_cli(tmp_path / "h", *[a for a in argv if a != "--json"])
    assert plain.stdout == "" and plain.returncode == 2
