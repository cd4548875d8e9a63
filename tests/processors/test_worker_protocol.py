"""The shipped processors as persistent workers (``THEORYX_WORKER=jsonl``; BUILD.md "Persistent
workers"), run as host subprocesses: one JSON request per stdin line, one JSON answer per stdout
line and nothing else there; each request is exactly a one-shot run — same outputs, same
stdout (into the request's ``stdout_path``), same exit codes — and nothing leaks between them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.contract import BASE_ENV, HostContract

REGISTRY = Path(__file__).resolve().parents[2] / "registry" / "processors"
TEXTSTATS = REGISTRY / "data" / "textstats" / "run.py"
LITELLM = REGISTRY / "llm" / "litellm" / "run.py"


class HostWorker:
    """A processor started once in worker mode; :meth:`request` sends one request and reads
    its answer, outputs and logs."""

    def __init__(self, root: Path, script: Path, env: dict[str, str] | None = None) -> None:
        self.root, self.count = root, 0
        child_env = {**BASE_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "THEORYX_WORKER": "jsonl",
                     "HOME": str(root / "no-home"), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, str(script)], cwd=root, env=child_env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, line: bytes) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def request(self, inputs: Any) -> tuple[dict[str, Any], dict[str, bytes], bytes, str]:
        self.count += 1
        d = self.root / f"request-{self.count}"
        for sub in ("outputs", "result"):
            (d / sub).mkdir(parents=True)
        (d / "inputs.json").write_text(json.dumps(inputs))
        req = {"id": self.count, "inputs_path": str(d / "inputs.json"), "outputs_dir": str(d / "outputs"),
               "result_path": str(d / "result" / "result.json"), "stdout_path": str(d / "stdout.log"),
               "stderr_path": str(d / "stderr.log"), "write_prefix": "/artifacts/outputs/", "seed": 0,
               "execution_id": f"test-{self.count}", "ref": "test"}
        answer = self.send((json.dumps(req) + "\n").encode())
        outputs = {p.relative_to(d / "outputs").as_posix(): p.read_bytes()
                   for p in sorted((d / "outputs").rglob("*")) if p.is_file()}
        return answer, outputs, (d / "stdout.log").read_bytes(), (d / "stderr.log").read_text()

    def finish(self) -> tuple[int, bytes, str]:
        """End of input: the worker exits; ``(exit code, rest of stdout, stderr)``."""
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err.decode("utf-8", "replace")


@pytest.fixture
def files(tmp_path: Path) -> Iterator[HostContract]:
    yield HostContract(tmp_path / "oneshot", TEXTSTATS)


def test_textstats_worker_answers_each_request_like_a_one_shot_run(tmp_path: Path, files: HostContract) -> None:
    text = files.attach("a.txt", b"The cat sat.\nThe dog sat too!\n")
    table = files.attach("b.csv", b"name,n\na,1\nb,2\n", mime="text/csv")
    worker = HostWorker(tmp_path, TEXTSTATS)
    seen = [worker.request({"file": text}), worker.request({"file": table, "top": 1}),
            worker.request({"file": {"no": "artifact"}}), worker.request({"file": text})]
    code, rest, stderr = worker.finish()
    assert code == 0 and rest == b"" and stderr == ""          # nothing but answers; logs went to the files
    assert [(a["id"], a["exit_code"]) for a, _, _, _ in seen] == [(1, 0), (2, 0), (3, 2), (4, 0)]
    for (answer, outputs, stdout, err), inputs in zip(seen, [{"file": text}, {"file": table, "top": 1}], strict=False):
        alone = files.run(inputs)
        assert outputs == alone.outputs and stdout == alone.stdout and err == alone.stderr, answer
    assert seen[2][1] == {} and seen[2][3].startswith("bad inputs:")   # failed alone, wrote nothing
    assert seen[3][1] == seen[0][1] and seen[3][2] == seen[0][2]        # the same request, the same bytes
    print(f"4 requests in one process: exit codes {[a['exit_code'] for a, _, _, _ in seen]}")


def test_a_malformed_request_is_answered_and_the_worker_goes_on(tmp_path: Path, files: HostContract) -> None:
    text = files.attach("a.txt", b"words words\n")
    worker = HostWorker(tmp_path, TEXTSTATS)
    garbled = worker.send(b"not json\n")
    assert garbled["id"] is None and garbled["exit_code"] == 2 and "malformed request" in garbled["error"]
    missing = worker.send(b'{"id": 9, "inputs_path": "/nowhere"}\n')
    assert missing["id"] == 9 and missing["exit_code"] == 2 and "malformed request" in missing["error"]
    answer, outputs, stdout, _ = worker.request({"file": text})
    assert answer["exit_code"] == 0 and json.loads(outputs["stats.json"])["words"] == 2 and stdout
    assert worker.finish()[0] == 0


@pytest.mark.slow
def test_litellm_worker_serves_requests_with_one_import(tmp_path: Path) -> None:
    pytest.importorskip("litellm")
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI(reply_text="Paris.") as fake:
        worker = HostWorker(tmp_path, LITELLM, {"OPENAI_API_KEY": "sk-test-" + os.urandom(6).hex()})
        seen = [worker.request({"model": "gpt-4o-mini", "api_base": fake.url,
                                "messages": [{"role": "user", "content": f"question {i}"}]}) for i in range(3)]
        bad = worker.request({"messages": "not a list"})
        code, rest, stderr = worker.finish()
    assert code == 0 and rest == b"", (rest, stderr)           # LiteLLM printed nothing on the protocol
    for answer, outputs, stdout, _ in seen:
        assert answer["exit_code"] == 0 and outputs["text/response.txt"] == b"Paris." and stdout == b"Paris."
        assert json.loads(outputs["metadata.json"])["finish_reason"] == "stop"
    assert [r.body["messages"][0]["content"] for r in fake.chat_requests()] == [f"question {i}" for i in range(3)]
    assert bad[0]["exit_code"] == 2 and bad[1] == {} and "bad inputs" in bad[3]
