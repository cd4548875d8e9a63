"""Mistakes a processor author makes in ``mock.py`` are the processor's failure
(``ERR_PROCESSOR_FAILED``, the reason in its stderr), never an exit of theoryx itself nor
``ERR_INTERNAL``."""

from __future__ import annotations

from pathlib import Path

import pytest

import theoryx
from theoryx.errors import ProcessorFailed

SPEC = f"""\
ref: test/author@1
image:
  ref: example.invalid/author@sha256:{"0" * 64}
inputs:
  type: object
  properties:
    mode: {{type: string}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""
MOCK = '''\
import sys


def run(inputs, outdir, ctx):
    (outdir / "out.txt").write_text("hi")
    mode = inputs["mode"]
    if mode == "exit3":
        sys.exit(3)
    if mode == "exit0":
        sys.exit(0)
    if mode == "list":
        return [1, 2]
    if mode == "path":
        return {"meta": {"where": outdir}}
    if mode.startswith("print"):
        print("hello from", mode)
        print("a note", file=sys.stderr)
        sys.stdout.flush()
    return {}
'''


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    root = tmp_path / "authors"
    (root / "processors" / "test" / "author").mkdir(parents=True)
    (root / "processors" / "test" / "author@1.yaml").write_text(SPEC)
    (root / "processors" / "test" / "author" / "mock.py").write_text(MOCK)
    return root


def run(home: Path, reg: Path, mode: str, **options: float) -> theoryx.RunResult:
    return theoryx.run("test/author@1", inputs={"mode": mode}, adapter="mock", home=home,
                       registry=str(reg), adapter_options=options or None)


def stderr_of(exc: ProcessorFailed) -> str:
    return exc.message.split("--- stderr (last lines) ---", 1)[-1]


def test_sys_exit_in_mock_py_is_the_processors_exit_code(home: Path, reg: Path) -> None:
    with pytest.raises(ProcessorFailed, match="exit code 3") as info:
        run(home, reg, "exit3")
    assert "SystemExit" in stderr_of(info.value)
    assert run(home, reg, "exit0").output("out.txt").text() == "hi", "exit 0 is success, as in a container"
@pytest.mark.parametrize(("mode", "why"), [("list", "returned a list"), ("path", "not JSON")])
def test_a_result_that_is_not_a_json_object_fails_the_processor(home: Path, reg: Path, mode: str, why: str) -> None:
    with pytest.raises(ProcessorFailed, match="exit code 1") as info:
        run(home, reg, mode)
    assert why in stderr_of(info.value) and "mock.py" in stderr_of(info.value)
    with pytest.raises(ProcessorFailed):
        run(home, reg, mode, cost_usd=0.5)    # a simulated cost is no internal error either


def test_what_mock_py_prints_is_its_log_never_theoryx_output(reg: Path, tmp_path: Path) -> None:
    """`print()` in a mock.py went to theoryx's own stdout: `run --json` printed a line before its
    JSON document. Now what it prints is the processor's stdout/stderr (`logs`), also for a
    batch's items running on several threads at once."""
    import json
    import subprocess
    import sys

    from theoryx_testing import REPO, subprocess_env

    home = tmp_path / "home"
    env = subprocess_env(home, THEORYX_REGISTRY=str(reg))
    res = subprocess.run([sys.executable, "-m", "theoryx", "run", "--adapter", "mock", "--ref", "test/author@1",
                          "--inputs-json", '{"mode": "print"}', "--json"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    body = json.loads(res.stdout)                  # one JSON document, nothing else
    assert res.returncode == 0 and body["status"] == "success", res.stdout
    assert "hello from" not in res.stderr and "a note" not in res.stderr, res.stderr
    logs = subprocess.run([sys.executable, "-m", "theoryx", "logs", body["execution_id"], "--stdout"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "hello from print" in logs, logs
    with theoryx.Session(home, registry=str(reg)) as session:
        results = list(session.map("test/author@1", [{"inputs": {"mode": f"print {i}"}} for i in range(6)],
                                   adapter="mock", jobs=3))
    for i, r in enumerate(results):
        assert r.result is not None
        out = subprocess.run([sys.executable, "-m", "theoryx", "logs", r.result.execution_id, "--stdout"],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout
        assert out.strip() == f"hello from print {i}", (i, out)
    assert not isinstance(sys.stdout, type(None)) and type(sys.stdout).__name__ != "_ThreadRouted"
