"""Files and streams the CLI writes and reads for the user: ``--out`` and ``--save-first`` never
replace a device or FIFO and never lose an existing file to an error; items files in any bytes;
a closed stdout; SIGTERM and a second Ctrl-C; a home that cannot be one."""

from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_map import lines, msg, slow_registry, tmap, write_items
from theoryx_testing import REGISTRY, REPO, Cli, hello_args

from theoryx.cli.output import OutputFile, atomic_write
from theoryx.errors import UsageError

MOCK = ("--adapter", "mock", "--ref", "llm/litellm@1")


def two_items(tmp_path: Path) -> Path:
    return write_items(tmp_path / "items.jsonl", [{"inputs": msg("a")}, {"inputs": msg("b")}])


def test_out_through_a_symlink_to_dev_null_writes_through_and_keeps_the_device(tmp_path: Path) -> None:
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    proc = tmap(tmp_path / "h", *MOCK, "--items", str(two_items(tmp_path)), "--out", str(link), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h", "items.jsonl", "null"]   # no temp file


def test_out_to_a_fifo_writes_every_line_through_and_leaves_the_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = tmap(tmp_path / "h", *MOCK, "--items", str(two_items(tmp_path)), "--out", str(fifo), "--quiet")
    if not got:     # nothing opened the FIFO (it was replaced): release the reader, then fail
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [o["status"] for o in lines(got[0].decode())] == ["success", "success"]


def test_an_error_that_stops_the_batch_leaves_out_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    out = tmp_path / "res.jsonl"
    out.write_text("PRECIOUS\n")
    proc = subprocess.run([sys.executable, "-m", "theoryx", "--home", str(tmp_path / "afile" / "home"), "map", *MOCK,
                           "--items", str(two_items(tmp_path)), "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, THEORYX_REGISTRY=str(REGISTRY)), timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Error: cannot use ") and "theoryx home" in proc.stderr, proc.stderr
    assert out.read_text() == "PRECIOUS\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "items.jsonl", "res.jsonl"]


@pytest.mark.parametrize("target, message", [("afile/x", "Not a directory"), ("dir", "is a directory")])
def test_out_that_cannot_be_written_is_a_usage_error(tmp_path: Path, target: str, message: str) -> None:
    (tmp_path / "afile").write_text("")
    (tmp_path / "dir").mkdir()
    cli = Cli(tmp_path / "h", REGISTRY)
    res = cli("map", *MOCK, "--items", str(two_items(tmp_path)), "--out", str(tmp_path / target))
    assert res.exit_code == 2 and message in res.stderr, res.output


def test_output_file_modes_and_abandon(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        atomic_write(fresh, b"x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644 and fresh.read_bytes() == b"x"
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o640)
        atomic_write(kept, b"new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_bytes() == b"new"
        out = OutputFile(kept)
        out.stream.write("half")    # type: ignore[arg-type]
        out.abandon()
        assert kept.read_bytes() == b"new"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.txt", "kept.txt"]
        with pytest.raises(UsageError, match="is a directory"):
            OutputFile(tmp_path, what="--save-first")
    finally:
        os.umask(old)


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temp file"])
def test_output_file_writes_whole_files_either_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   unnamed: bool) -> None:
    """With or without unnamed files (a filesystem without O_TMPFILE uses a named temp file)."""
    from theoryx.cli import output

    if not unnamed:
        monkeypatch.setattr(output, "_unnamed", lambda directory, perm: None)
    target = tmp_path / "o.txt"
    out = OutputFile(target)
    assert out.unnamed is unnamed
    out.stream.write("one\n")      # type: ignore[arg-type]
    assert not target.exists()
    out.commit()
    assert target.read_text() == "one\n" and [p.name for p in tmp_path.iterdir()] == ["o.txt"]
    out = OutputFile(target)
    out.stream.write("two\n")      # type: ignore[arg-type]
    out.abandon()
    assert target.read_text() == "one\n" and [p.name for p in tmp_path.iterdir()] == ["o.txt"]


def test_a_writer_killed_with_sigkill_leaves_no_temp_file(tmp_path: Path) -> None:
    """`map --out F` killed with kill -9 left `.F.<pid>.<random>.tmp` beside F for good; an
    unnamed file (O_TMPFILE) vanishes with the process."""
    target = tmp_path / "out.jsonl"
    target.write_text("before\n")
    code = ("import os, signal, sys; from pathlib import Path; from theoryx.cli.output import OutputFile\n"
            "out = OutputFile(Path(sys.argv[1])); out.stream.write('x' * 100000); out.stream.flush()\n"
            "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"] and target.read_text() == "before\n"


def test_save_first_to_a_symlinked_device_writes_through(tmp_path: Path) -> None:
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    res = Cli(tmp_path / "h", REGISTRY)("run", *hello_args("--save-first", str(link)))
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode)


ITEM = b'{"inputs": {"messages": [{"role": "user", "content": "a"}]}}'


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_items_that_are_not_utf8_fail_alone_naming_their_line(tmp_path: Path, from_stdin: bool) -> None:
    data = b"\xef\xbb\xbf" + ITEM + b"\r\n\xff\xfe{}\n" + ITEM.replace(b'"a"', b'"caf\xe9"') + b"\n\n" + \
        ITEM.replace(b'"a"', b'"b"')
    items = tmp_path / "items.jsonl"
    items.write_bytes(data)
    args = [sys.executable, "-m", "theoryx", "map", *MOCK, "--items", "-" if from_stdin else str(items)]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, input=data if from_stdin else None, timeout=120,
                          env=dict(os.environ, THEORYX_HOME=str(tmp_path / "h"), THEORYX_REGISTRY=str(REGISTRY)))
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr and b"internal" not in proc.stderr
    out = lines(proc.stdout.decode())
    assert [(o["line"], o["status"]) for o in out] == [(1, "success"), (2, "error"), (3, "error"), (5, "success")]
    assert out[1]["error"] == {"code": "ERR_INPUTS", "message": "line 2: not UTF-8 (byte 0xff at byte 1)"}
    assert out[2]["error"]["message"].startswith("line 3: not UTF-8 (byte 0xe9 at byte 58)")


def test_a_closed_stdout_ends_quietly_with_141(tmp_path: Path) -> None:
    items = write_items(tmp_path / "items.jsonl", [{"inputs": msg("same")}] * 2000)   # far more than a pipe holds
    env = dict(os.environ, THEORYX_HOME=str(tmp_path / "h"), THEORYX_REGISTRY=str(REGISTRY))
    for args in (["map", *MOCK, "--items", str(items), "--quiet"],
                 ["run", "--json", *hello_args()]):
        proc = subprocess.Popen([sys.executable, "-m", "theoryx", *args], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(1)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
        if args[0] == "map":
            assert proc.returncode == 141, err
        else:       # one small envelope: it may fit the pipe before it closes
            assert proc.returncode in (0, 141), err
        assert err == b"", err


@pytest.mark.slow
@pytest.mark.parametrize("signals, code", [((signal.SIGTERM,), 143), ((signal.SIGINT, signal.SIGINT), 130)],
                         ids=["SIGTERM", "Ctrl-C twice"])
def test_sigterm_and_a_second_ctrl_c_keep_what_finished(tmp_path: Path, signals: tuple[int, ...],
                                                        code: int) -> None:
    registry, home = slow_registry(tmp_path), tmp_path / "home"
    items = write_items(tmp_path / "items.jsonl", [{"inputs": {"i": i}} for i in range(200)])
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(registry))
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "map", "--adapter", "mock", "--ref", "test/slowish@1",
                             "--items", str(items), "--jobs", "2", "--out", str(out)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "internal" not in err
    done = lines(out.read_text())
    assert 0 < len(done) < 200
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert json.loads(out.read_text().splitlines()[0])["line"] == 1


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_inputs_file_that_is_not_utf8_is_err_inputs_json(tmp_path: Path, from_stdin: bool) -> None:
    data = b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'
    path = tmp_path / "inputs.json"
    path.write_bytes(data)
    name = "-" if from_stdin else str(path)
    proc = subprocess.run([sys.executable, "-m", "theoryx", "run", "--json", *MOCK, "--inputs-file", name], cwd=REPO,
                          capture_output=True, input=data if from_stdin else None, timeout=120,
                          env=dict(os.environ, THEORYX_HOME=str(tmp_path / "h"), THEORYX_REGISTRY=str(REGISTRY)))
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"] == {"code": "ERR_INPUTS_JSON",
                                                "message": f"--inputs-file {name} is not UTF-8 (byte 0xe9 at byte 47)"}
    path.write_bytes(b"\xef\xbb\xbf" + data.replace(b"\xe9", b"e"))      # a byte-order mark is fine
    ok = Cli(tmp_path / "h", REGISTRY)("run", "--json", *MOCK, "--inputs-file", str(path))
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize("args", [
    ["--home", "", "du"], ["run", "--home", "", *hello_args()], ["map", *MOCK, "--items", "{items}", "--home", ""],
    ["map", *MOCK, "--items", "{items}", "--out", ""], ["run", *hello_args("--save-first", "")],
], ids=["group --home", "run --home", "map --home", "map --out", "run --save-first"])
def test_an_empty_path_option_is_refused_not_taken_as_the_current_directory(
        tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    items = two_items(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.replace("{items}", str(items)) for a in args]
    proc = subprocess.run([sys.executable, "-m", "theoryx", *argv], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, THEORYX_HOME=str(tmp_path / "h"), THEORYX_REGISTRY=str(REGISTRY),
                                   PYTHONPATH=str(REPO)))
    assert proc.returncode == 2 and "must not be empty" in proc.stderr, proc.stderr
    assert list(work.iterdir()) == [] and proc.stdout == ""


def test_ctrl_c_ends_a_batch_waiting_for_more_items_on_stdin(tmp_path: Path) -> None:
    """The writer of the pipe is still there (another process group, a FIFO): one Ctrl-C ends the
    batch at once with what finished (it used to wait for a line that never came)."""
    env = dict(os.environ, THEORYX_HOME=str(tmp_path / "h"), THEORYX_REGISTRY=str(REGISTRY))
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "map", *MOCK, "--items", "-"], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"".join(json.dumps({"inputs": msg(t)}).encode() + b"\n" for t in "ab"))
        proc.stdin.flush()
        out: queue.Queue[bytes] = queue.Queue()
        stdout = proc.stdout
        threading.Thread(target=lambda: [out.put(line) for line in stdout], daemon=True).start()
        # both misses are reported while the batch waits for a third item (they used to be held back)
        got = [json.loads(out.get(timeout=60)) for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        err = proc.stderr.read() if proc.stderr else b""
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert [g["status"] for g in got] == ["success", "success"] and out.empty()
    assert b"interrupted: 2 items" in err and b"Fatal" not in err and b"Traceback" not in err


SLEEPY_MOCK = """\
import time

def run(inputs, outdir, ctx):
    time.sleep(60)
    return {}
"""


@pytest.mark.slow
def test_ctrl_c_during_run_json_still_prints_one_envelope_and_records_err_interrupted(tmp_path: Path) -> None:
    from test_map import SLOW_SPEC

    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    registry = tmp_path / "registry"
    (registry / "processors" / "test" / "slowish").mkdir(parents=True)
    (registry / "processors" / "test" / "slowish@1.yaml").write_text(SLOW_SPEC.format(zeros="0" * 64))
    (registry / "processors" / "test" / "slowish" / "mock.py").write_text(SLEEPY_MOCK)
    env = dict(os.environ, THEORYX_HOME=str(tmp_path / "h"), THEORYX_REGISTRY=str(registry))
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "run", "--json", "--adapter", "mock", "--ref",
                             "test/slowish@1", "--inputs-json", "{}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)                                   # started, and sleeping inside the processor
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    body = json.loads(out)                          # was: nothing on stdout
    assert body["status"] == "error" and body["error"]["code"] == "ERR_INTERRUPTED" and body["execution_id"]
    rec = executions.get(open_stores(tmp_path / "h").db, body["execution_id"])
    assert rec.status == "error" and rec.error is not None and rec.error["code"] == "ERR_INTERRUPTED"
