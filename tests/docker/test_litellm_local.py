"""``llm/litellm@1`` for real on the local adapter, against a fake OpenAI server on 127.0.0.1
(the container uses the host network to reach it)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_testing import cli_env, spawn_cli
from fakes.openai_server import FakeOpenAI
from theoryx_testing import REGISTRY

import theoryx
from cas import Store
from theoryx.errors import ProcessorFailed
from theoryx.pipeline.request import StreamFn
from theoryx.pipeline.result import RunResult

pytestmark = pytest.mark.docker
REF = "llm/litellm@1"
HOST_NET = {"network": "host"}


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "sk-test-canary-" + os.urandom(10).hex()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    return key


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply_text="The capital of France is Paris.") as server:
        yield server


def inputs(fake: FakeOpenAI, text: str = "Capital of France?") -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "api_base": fake.url}


def run(home: Path, fake: FakeOpenAI, stream: StreamFn | None = None, text: str = "Capital of France?") -> RunResult:
    return theoryx.run(REF, inputs=inputs(fake, text), adapter="local", home=home, registry=str(REGISTRY),
                   adapter_options=HOST_NET, stream=stream)


def read(home: Path, res: RunResult, rel: str) -> bytes:
    entry = next(o for o in res.outputs if o.path == (res.record.write_prefix or "") + rel)
    return Store(home / "cas-v1").read(entry.cid)


def no_file_contains(root: Path, needle: bytes) -> bool:
    return not any(needle in (Path(d) / f).read_bytes() for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.slow
def test_litellm_completion_without_streaming(home: Path, fake: FakeOpenAI, api_key: str) -> None:
    res = run(home, fake)
    assert read(home, res, "text/response.txt") == b"The capital of France is Paris."
    meta = json.loads(read(home, res, "metadata.json"))
    assert meta["model"] == "gpt-4o-mini" and meta["finish_reason"] == "stop"
    assert meta["usage"]["prompt_tokens"] == 11
    assert res.record.usage["total_tokens"] > 11 and res.record.cost_micros > 0
    (request,) = fake.chat_requests()
    assert request.headers["authorization"] == f"Bearer {api_key}"      # the secret reached it
    assert request.body["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert no_file_contains(home, api_key.encode())


@pytest.mark.slow
def test_litellm_streams_tokens_live(home: Path, fake: FakeOpenAI, api_key: str) -> None:
    chunks: list[bytes] = []
    res = run(home, fake, stream=lambda ch, data: chunks.append(data) if ch == "stdout" else None,
              text="Stream it")
    assert b"".join(chunks) == b"The capital of France is Paris."
    assert read(home, res, "text/response.txt") == b"The capital of France is Paris."
    assert fake.chat_requests()[0].body["stream"] is True
    assert no_file_contains(home, api_key.encode())


@pytest.mark.slow
def test_provider_error_status_fails_once_naming_it(home: Path, fake: FakeOpenAI, api_key: str) -> None:
    fake.status = 429
    with pytest.raises(ProcessorFailed) as ei:
        run(home, fake, text="Rate me")
    assert ei.value.code == "ERR_PROCESSOR_FAILED" and "exit code 3" in ei.value.message
    assert "provider error: 429 rate limited" in ei.value.message
    assert len(fake.chat_requests()) == 1                               # no retry storm
    assert api_key not in ei.value.message
    assert no_file_contains(home, api_key.encode())


@pytest.mark.slow
def test_litellm_from_the_cli_with_stream(home: Path, fake: FakeOpenAI, api_key: str) -> None:
    args = ["run", "--ref", REF, "--stream", "--inputs-json", json.dumps(inputs(fake, "From the CLI")),
            "--adapter-opts-json", json.dumps(HOST_NET)]
    proc = spawn_cli(args, cli_env(home, REGISTRY), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert text.startswith("The capital of France is Paris.")
    assert "Processor completed successfully" in text and "Cache: miss" in text
    assert no_file_contains(home, api_key.encode())
