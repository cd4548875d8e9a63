"""The FakeOpenAI test server speaks the OpenAI wire format (checked with plain urllib)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI

SCRIPT = Path(__file__).resolve().parents[1] / "fakes" / "openai_server.py"


def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer sk-x"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _events(raw: bytes) -> list[Any]:
    lines = [line for line in raw.decode().split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[len("data: "):] for line in lines]


def test_completion_echoes_the_model_and_records_the_request() -> None:
    with FakeOpenAI(reply_text="Hi there", prompt_tokens=4) as fake:
        status, raw = _post(fake.url, {"model": "gpt-4o-mini", "messages": []})
        [request] = fake.chat_requests()
    body = json.loads(raw)
    assert status == 200 and body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi there"}
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert request.headers["authorization"] == "Bearer sk-x"
    assert request.body == {"model": "gpt-4o-mini", "messages": []}


def test_stream_deltas_join_to_the_reply_and_usage_comes_last_when_asked() -> None:
    with FakeOpenAI(reply_text="  one two\nthree ") as fake:
        _, with_usage = _post(fake.url, {"model": "m", "stream": True,
                                         "stream_options": {"include_usage": True}})
        _, without = _post(fake.url, {"model": "m", "stream": True})
    events = _events(with_usage)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "  one two\nthree "
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert all("usage" not in json.loads(e) for e in _events(without)[:-1])


@pytest.mark.parametrize(("status", "kind"), [(401, "invalid_request_error"), (429, "requests"),
                                              (500, "server_error")])
def test_error_status_sends_an_openai_error_body(status: int, kind: str) -> None:
    with FakeOpenAI(status=status) as fake:
        got, raw = _post(fake.url, {"model": "m", "messages": []})
    assert got == status
    assert json.loads(raw)["error"]["type"] == kind


def test_unknown_path_is_404_and_everything_is_recorded_to_a_file(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    with FakeOpenAI(record_path=record) as fake:
        request = urllib.request.Request(fake.url + "/embeddings", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 404
    [line] = record.read_text().splitlines()
    assert json.loads(line)["path"] == "/v1/embeddings"


def test_script_prints_its_url_and_serves_until_terminated(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--port", "0", "--reply", "from script",
                             "--record", str(tmp_path / "r.jsonl")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        status, raw = _post(line.split()[-1], {"model": "m", "messages": []})
        assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "from script"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1
