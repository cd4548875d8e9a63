"""The function body that runs inside the Modal container, run here with a temporary root."""

from __future__ import annotations

import json
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from theoryx.adapters.modal import runner as modal_runner


def payload(script: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "format": 1, "command": [sys.executable, "-c", script], "cwd": "/",
        "env": {"THEORYX_INPUTS": "/theoryx/inputs.json", "THEORYX_WRITE_PREFIX": "/artifacts/outputs/",
                "THEORYX_RESULT": "/theoryx/result/result.json"},
        "secret_names": [], "inputs_json": "{}", "attachments": {}, "write_prefix": "/artifacts/outputs/",
        "timeout": 30, "limits": {"max_files": 100, "max_bytes": 1 << 20, "max_depth": 4},
    }
    body.update(extra)
    return body


OUT = "import os; out = os.environ['THEORYX_WRITE_PREFIX']\n"


def test_malformed_payload_is_reported_not_raised(tmp_path: Path) -> None:
    response = modal_runner.run({"format": 99}, root=str(tmp_path))
    assert response["format"] == 1 and "unsupported payload format 99" in response["error"]


@pytest.mark.parametrize("world", ["/artifacts/inputs/../../etc/x", "/artifacts/inputs/b3:a", "/etc/passwd"])
def test_unsafe_attachment_paths_are_refused(tmp_path: Path, world: str) -> None:
    response = modal_runner.run(payload("pass", attachments={world: b"x"}), root=str(tmp_path))
    assert "unsafe path" in response["error"]
    assert not (tmp_path / "etc").exists()


def test_inputs_are_read_only_and_artifacts_point_below_the_root(tmp_path: Path) -> None:
    script = ("import json, os, stat; inp = json.load(open(os.environ['THEORYX_INPUTS']));"
              "p = inp['f']['$artifact']; print(json.dumps([p, open(p).read(), oct(os.stat(p).st_mode & 0o777)]))")
    inputs = {"f": {"$artifact": "/artifacts/inputs/b3:ab/f.txt", "cid": "b3:ab"}}
    response = modal_runner.run(payload(script, inputs_json=json.dumps(inputs),
                                        attachments={"/artifacts/inputs/b3:ab/f.txt": b"data"}), root=str(tmp_path))
    path, text, mode = json.loads(response["stdout"])
    assert path == str(tmp_path / "artifacts/inputs/b3:ab/f.txt") and text == "data" and mode == "0o444"


def test_command_not_found_is_exit_127(tmp_path: Path) -> None:
    response = modal_runner.run(payload("", command=["/no/such/tool"]), root=str(tmp_path))
    assert response["error"] is None and response["exit_code"] == 127
    assert b"cannot execute '/no/such/tool'" in response["stderr"]


def test_exit_by_signal_is_128_plus_the_signal(tmp_path: Path) -> None:
    response = modal_runner.run(payload("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"),
                                root=str(tmp_path))
    assert response["exit_code"] == 143 and not response["timed_out"] and not response["oom_killed"]


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    t0 = time.monotonic()
    response = modal_runner.run(payload("import time; print('x', flush=True); time.sleep(30)", timeout=0.5),
                                root=str(tmp_path))
    assert response["timed_out"] and response["exit_code"] == 137 and response["stdout"] == b"x\n"
    assert time.monotonic() - t0 < 10


def test_leftover_processes_do_not_hold_the_run(tmp_path: Path) -> None:
    t0 = time.monotonic()
    response = modal_runner.run(payload("", command=["/bin/sh", "-c", "sleep 30 & echo started"]),
                                root=str(tmp_path))
    assert response["exit_code"] == 0 and response["stdout"] == b"started\n"
    assert time.monotonic() - t0 < 10


def test_modal_variables_are_not_passed_on_unless_declared_secrets(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TASK_ID", "ta-1")
    monkeypatch.setenv("MODAL_KEY", "declared")
    script = "import os, json; print(json.dumps(sorted(k for k in os.environ if k.startswith('MODAL_'))))"
    response = modal_runner.run(payload(script, secret_names=["MODAL_KEY"]), root=str(tmp_path))
    assert json.loads(response["stdout"]) == ["MODAL_KEY"]


def test_outputs_are_described_without_following_links(tmp_path: Path) -> None:
    script = OUT + (
        "os.makedirs(out + 'a/b/c/d/e'); open(out + 'a/f.txt', 'w').write('f');"
        "os.symlink('/etc/hostname', out + 'link'); os.mkfifo(out + 'fifo');"
        "open(out + 'suid', 'w').write('s'); os.chmod(out + 'suid', 0o4755)"
    )
    response = modal_runner.run(payload(script), root=str(tmp_path))
    by_path = {e["path"]: e for e in response["outputs"]}
    assert by_path["a/f.txt"]["data"] == b"f"
    assert by_path["link"]["kind"] == "symlink" and by_path["link"]["target"] == "/etc/hostname"
    assert by_path["link"]["data"] is None
    assert by_path["fifo"]["kind"] == "fifo"
    assert by_path["suid"]["data"] is None and by_path["suid"]["mode"] & stat.S_ISUID
    assert "a/b/c/d" in by_path and "a/b/c/d/e" not in by_path        # no deeper than max_depth


def test_outputs_over_the_file_cap_stop_the_walk(tmp_path: Path) -> None:
    script = OUT + "[open(out + 'f%03d' % i, 'w').write('x') for i in range(20)]"
    limits = {"max_files": 5, "max_bytes": 1 << 20, "max_depth": 4}
    response = modal_runner.run(payload(script, limits=limits), root=str(tmp_path))
    assert len(response["outputs"]) == 6 and all(e["data"] is None for e in response["outputs"])


def test_result_must_be_a_regular_file(tmp_path: Path) -> None:
    script = "import os; os.symlink('/etc/hostname', os.environ['THEORYX_RESULT'])"
    assert modal_runner.run(payload(script), root=str(tmp_path))["result"] is None
    script = "import os; open(os.environ['THEORYX_RESULT'], 'w').write('{\"cost_usd\": 1}')"
    assert modal_runner.run(payload(script), root=str(tmp_path))["result"] == b'{"cost_usd": 1}'


def test_each_run_starts_from_empty_directories(tmp_path: Path) -> None:
    modal_runner.run(payload(OUT + "open(out + 'old', 'w').write('x')"), root=str(tmp_path))
    response = modal_runner.run(payload("pass"), root=str(tmp_path))
    assert response["outputs"] == []


def test_run_stream_yields_chunks_then_the_response(tmp_path: Path) -> None:
    script = "import sys, time; print('a', flush=True); time.sleep(0.2); print('b', file=sys.stderr)"
    events = list(modal_runner.run_stream(payload(script), root=str(tmp_path)))
    assert b"".join(d for n, d in events if n == "stdout") == b"a\n"
    assert b"".join(d for n, d in events if n == "stderr") == b"b\n"
    name, response = events[-1]
    assert name == "done" and response["streamed"] and response["stdout"] is None


def test_killed_response_reports_no_outputs() -> None:
    response = modal_runner.killed_response(timed_out=True, note="stopped\n")
    assert response["timed_out"] and response["exit_code"] == 137 and response["outputs"] == []
    assert response["stderr"] == b"stopped\n" and response["error"] is None


def test_runner_and_the_files_shipped_with_it_import_only_the_stdlib_and_each_other() -> None:
    from theoryx.adapters.modal.boundary import RUNNER_FILES

    top = Path(modal_runner.__file__).parents[2]
    shipped = {"theoryx." + rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
               for rel in RUNNER_FILES} | {"theoryx"}
    assert modal_runner.__name__ in shipped
    for rel in RUNNER_FILES:
        source = (top / rel).read_text()
        imported = {line.split()[1] for line in source.splitlines()
                    if line.startswith(("import ", "from ")) and not line.startswith("from __future__")}
        foreign = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names and m not in shipped}
        assert not foreign, (rel, foreign)
