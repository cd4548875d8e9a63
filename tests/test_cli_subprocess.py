"""``theoryx`` as a real process: console behaviour, concurrency, and what a hit imports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from theoryx_testing import HELLO, REPO, subprocess_env

RUN = [sys.executable, "-m", "theoryx", "run", "--adapter", "mock", "--ref", "llm/litellm@1",
       "--inputs-json", json.dumps(HELLO)]


def sh(args: list[str], home: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=subprocess_env(home), capture_output=True, text=True, cwd=REPO,
                          timeout=120, check=False, **kw)  # type: ignore[call-overload]


def test_run_then_hit_as_processes(home: Path) -> None:
    first = sh([*RUN, "--json"], home)
    assert first.returncode == 0, first.stderr
    second = sh([*RUN, "--json"], home)
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert (a["cache"], b["cache"]) == ("miss", "hit")
    assert a["memo_key"] == b["memo_key"]


def test_error_exit_codes_as_a_process(home: Path) -> None:
    usage = sh([*RUN, "--write-prefix", "/artifacts/x"], home)
    assert usage.returncode == 2
    assert usage.stderr.strip() == "Error: --write-prefix must end with /"
    failure = sh([sys.executable, "-m", "theoryx", "run", "--adapter", "mock", "--ref", "llm/litellm@1",
                  "--json", "--inputs-json", "{}"], home)
    assert failure.returncode == 1
    body = json.loads(failure.stdout)
    assert body["status"] == "error" and body["error"]["code"] == "ERR_INPUTS"
    assert failure.stderr.startswith("Error: ")


@pytest.mark.slow
def test_concurrent_runs_on_one_home_all_succeed(home: Path) -> None:
    procs = []
    for i in range(8):
        inputs = {"messages": [{"role": "user", "content": f"m{i % 3}"}]}
        args = [sys.executable, "-m", "theoryx", "run", "--json", "--adapter", "mock",
                "--ref", "llm/litellm@1", "--inputs-json", json.dumps(inputs)]
        procs.append(subprocess.Popen(args, env=subprocess_env(home), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=REPO))
    bodies = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        bodies.append(json.loads(out))
    keys = {b["memo_key"] for b in bodies}
    assert len(keys) == 3
    listed = sh([sys.executable, "-m", "theoryx", "ls", "--json", "--limit", "100"], home)
    assert len(json.loads(listed.stdout)) == 8
    for b in bodies:
        for o in b["outputs"]:
            cat = sh([sys.executable, "-m", "theoryx", "cat", o["cid"]], home)
            assert cat.returncode == 0 and len(cat.stdout.encode()) == o["size_bytes"]


HIT_PROBE = """
import json, sys
from theoryx.cli.main import main
try:
    main()
finally:
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in
                   ("yaml", "jsonschema", "docker", "modal", "litellm", "rich", "requests", "click"))
    print(json.dumps(heavy), file=sys.stderr)
"""


def test_a_cache_hit_imports_no_heavy_module_not_even_click(home: Path) -> None:
    assert sh([*RUN], home).returncode == 0
    probe = sh([sys.executable, "-c", HIT_PROBE, *RUN[3:], "--json"], home)
    assert json.loads(probe.stdout)["cache"] == "hit"
    assert json.loads(probe.stderr.strip().splitlines()[-1]) == []


def console_script() -> str:
    """The ``theoryx`` script installed beside this interpreter (``make install`` puts it there)."""
    found = shutil.which("theoryx", path=sysconfig.get_path("scripts"))
    assert found is not None, f"no theoryx console script in {sysconfig.get_path('scripts')}: run make install"
    return found


def own_id(stdout: str) -> str:
    return re.sub(r"^Execution: [0-9a-z]{26}$", "Execution: <id>", stdout, flags=re.MULTILINE)


@pytest.mark.slow
def test_python_dash_m_and_console_script_agree(home: Path) -> None:
    """Byte for byte: output, error output and exit code, on click's paths (help, version, a
    usage error, an unknown command, ``cat``) and on the fast path (a hit; each run gets its own
    execution id, the only part masked)."""
    script = console_script()
    assert sh([*RUN], home).returncode == 0
    response = json.loads(sh([*RUN, "--json"], home).stdout)["outputs"][1]["cid"]
    cases = [["--help"], ["--version"], ["run", "--help"], ["nope"], [*RUN[3:], "--write-prefix", "/artifacts/x"],
             ["cat", response], ["ls", "--plan", "no-such-plan", "--json"], RUN[3:]]
    for args in cases:
        by_module = sh([sys.executable, "-m", "theoryx", *args], home)
        by_script = sh([script, *args], home)
        assert by_module.stdout or by_module.stderr, args
        assert (by_script.returncode, own_id(by_script.stdout), by_script.stderr) == (
            by_module.returncode, own_id(by_module.stdout), by_module.stderr), args
    assert sh([script, "cat", response], home).stdout == "Mock response to 1 messages"


def test_closed_standard_streams_are_clear_errors_never_tracebacks(home: Path, tmp_path: Path) -> None:
    """Started with stdout closed (`>&-`), a run crashed with a raw traceback after it executed
    and was paid for; with stdin closed, `--inputs-file -`, `verify-receipt -` and `map --items -`
    wrote crash files; with stderr closed, map crashed at its first notice. Now: a closed stdout
    is a usage error before anything runs, a closed stdin is "the standard input is closed", a
    closed stderr discards notices; the descriptors are held on /dev/null so no file theoryx
    opens takes their numbers."""
    import os
    import shlex

    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"inputs": HELLO}) + "\n")
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    env = {**subprocess_env(home), "TMPDIR": str(crash_dir)}
    base = shlex.join([sys.executable, "-m", "theoryx"])

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, cwd=REPO,
                              timeout=120, check=False)

    closed_out = shell(f"{shlex.join(RUN)} >&-")
    assert closed_out.returncode == 2 and "standard output is closed" in closed_out.stderr, closed_out.stderr
    assert "Traceback" not in closed_out.stderr and not home.exists(), "it ran before failing"
    for command, what in ((f"{shlex.join(RUN[:-2])} --inputs-file - <&-", "--inputs-file -"),
                          (f"{base} map --adapter mock --ref llm/litellm@1 --items - <&-", "--items -"),
                          (f"{base} verify-receipt - <&-", "-")):
        res = shell(command)
        expected = f"Error: cannot read {what}: the standard input is closed"
        assert res.returncode == 2 and res.stderr.strip() == expected, (command, res.stderr)
    mapped = shell(f"{base} map --adapter mock --ref llm/litellm@1 --items {shlex.quote(str(items))} 2>&-")
    assert mapped.returncode == 0 and json.loads(mapped.stdout)["status"] == "success", mapped.stdout
    ran = shell(f"{shlex.join(RUN)} 2>&- --json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["cache"] == "hit"
    assert os.listdir(crash_dir) == [], "crash files were written"
