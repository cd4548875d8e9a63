"""llm/litellm@1's run.py: as a subprocess under the contract against FakeOpenAI, and its
helpers in-process (they work without litellm imported).

The subprocess runs are started together by one module fixture (each imports LiteLLM, a few
seconds of CPU) and each test checks one behaviour of one of them. A request timeout is checked
in-process, on the exception chain LiteLLM raises for it; the container test in
``test_processor_images.py`` runs the image with no network at all.
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.fakes.contract import ContractRun, HostContract, RunningProcessor, load_script
from tests.fakes.openai_server import FakeOpenAI

FOLDER = Path(__file__).resolve().parents[2] / "registry" / "processors" / "llm" / "litellm"
RUN_PY = FOLDER / "run.py"
API_KEY = "sk-test-0123456789abcdef"
REPLY = "The picture shows one red pixel."
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
NOTES = "Notes: the pixel is red.\nSecond line.\n"

run_py = load_script(RUN_PY, "theoryx_test_litellm_run")
LITELLM = importlib.util.find_spec("litellm")


# -- subprocess runs ------------------------------------------------------------------------

@dataclass
class Scenario:
    fake: FakeOpenAI
    running: RunningProcessor
    attachments: dict[str, dict[str, Any]]
    gates: list[bool] = field(default_factory=list)   # per stream payload: stdout had caught up

    def run(self) -> ContractRun:
        return self.running.wait(timeout=240)     # seven processes import LiteLLM at once: slow on 2 busy cores


def _start(root: Path, name: str, fake: FakeOpenAI, inputs: dict[str, Any], *,
           attach: dict[str, tuple[bytes, str | None]] | None = None, **kwargs: Any) -> Scenario:
    fake.start()
    host = HostContract(root / name, RUN_PY, env={"OPENAI_API_KEY": API_KEY})
    files = {n: host.attach(n, data, mime) for n, (data, mime) in (attach or {}).items()}
    inputs = json.loads(json.dumps(inputs).replace("$URL", fake.url))
    inputs = _substitute(inputs, files)
    return Scenario(fake, host.start(inputs, **kwargs), files)


def _substitute(value: Any, files: dict[str, dict[str, Any]]) -> Any:
    """Replace ``{"$file": name}`` placeholders with the attached ``$artifact`` objects."""
    if isinstance(value, dict):
        if set(value) == {"$file"}:
            return files[value["$file"]]
        return {k: _substitute(v, files) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, files) for v in value]
    return value


def _start_gated_stream(root: Path) -> Scenario:
    """A stream whose server sends each payload only once the previous tokens are on the
    processor's stdout (or 10 s passed): live streaming without timing assumptions."""
    gates: list[bool] = []
    holder: list[RunningProcessor] = []

    def gate(sent: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if holder and holder[0].stdout_so_far() == sent.encode():
                gates.append(True)
                return
            time.sleep(0.01)
        gates.append(False)

    fake = FakeOpenAI(reply_text="one two three four five", prompt_tokens=9, gate=gate)
    scenario = _start(root, "stream", fake, _minimal("openai/fake-local-model"), stream=True, seed=42)
    holder.append(scenario.running)
    scenario.gates = gates
    return scenario


def _minimal(model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "api_base": "$URL",
            **extra}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scenario]]:
    if LITELLM is None:
        pytest.skip("litellm is not installed")
    root = tmp_path_factory.mktemp("litellm")
    started: dict[str, Scenario] = {}
    try:
        started["plain"] = _start(root, "plain", FakeOpenAI(reply_text=REPLY), {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Read my notes:"},
                                             {"$file": "notes.txt"}]},
                {"role": "assistant", "content": "Done."},
                {"role": "user", "content": "Now describe the image."},
            ],
            "attachments": [{"$file": "pixel.png"}],
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 64, "stop": ["END"], "seed": 7,
            "api_base": "$URL", "request_timeout": 30,
        }, attach={"notes.txt": (NOTES.encode(), "text/plain"), "pixel.png": (PNG, "image/png")},
            seed=42)
        started["stream"] = _start_gated_stream(root)
        started["401"] = _start(root, "401", FakeOpenAI(
            status=401, error_message=f"Incorrect API key provided: {API_KEY}."), _minimal())
        started["429"] = _start(root, "429", FakeOpenAI(status=429), _minimal())
        started["500"] = _start(root, "500", FakeOpenAI(status=500), _minimal(), stream=True)
        started["hostile"] = _start(root, "hostile", FakeOpenAI(
            reply_text=f"your key is {API_KEY} \ud800 lone", model=f"echo-{API_KEY}",
            completion_tokens=100_000_000), _minimal(max_tokens=64))
        started["drip"] = _start(root, "drip", FakeOpenAI(reply_text="a b c d e f g h i j k l m n o p",
                                                          chunk_delay=1.0),
                                 _minimal("openai/fake-local-model", request_timeout=3), stream=True)
        yield started
    finally:
        for scenario in started.values():
            scenario.running.kill()
            scenario.fake.stop()


def _prices(model: str) -> tuple[float, float]:
    """Input/output price per token from the price map shipped inside litellm (not imported)."""
    assert LITELLM is not None and LITELLM.origin is not None
    table = json.loads((Path(LITELLM.origin).parent / "model_prices_and_context_window_backup.json")
                       .read_text())
    return table[model]["input_cost_per_token"], table[model]["output_cost_per_token"]


@pytest.mark.slow
def test_plain_run_writes_response_metadata_and_result(runs: dict[str, Scenario]) -> None:
    run = runs["plain"].run()
    assert run.exit_code == 0, run.stderr
    assert run.stdout.decode() == REPLY
    assert run.text("text/response.txt") == REPLY
    assert set(run.outputs) == {"text/response.txt", "metadata.json"}
    usage = runs["plain"].fake.usage()
    meta = run.json("metadata.json")
    assert meta["model"] == "gpt-4o-mini" and meta["provider"] == "openai"
    assert meta["id"] == "chatcmpl-fake-1" and meta["finish_reason"] == "stop"
    assert meta["usage"] == usage and meta["stream"] is False
    assert run.result is not None
    assert run.result["usage"] == usage
    assert run.result["meta"]["id"] == "chatcmpl-fake-1"
    assert run.result["cost_usd"] == meta["cost_usd"]


@pytest.mark.slow
def test_cost_is_reported_for_a_priced_model_behind_a_custom_api_base(
        runs: dict[str, Scenario]) -> None:
    run = runs["plain"].run()
    usage = runs["plain"].fake.usage()
    price_in, price_out = _prices("gpt-4o-mini")
    expected = usage["prompt_tokens"] * price_in + usage["completion_tokens"] * price_out
    assert run.result is not None
    assert run.result["cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert run.result["cost_usd"] > 0


@pytest.mark.slow
def test_exactly_one_request_with_the_forwarded_options(runs: dict[str, Scenario]) -> None:
    runs["plain"].run()
    [request] = runs["plain"].fake.chat_requests()
    body = request.body
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "gpt-4o-mini"
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.9, 64)
    assert body["stop"] == ["END"]
    assert body["seed"] == 7            # the input's seed, not THEORYX_SEED=42
    assert "stream" not in body


@pytest.mark.slow
def test_image_attachment_becomes_a_data_uri_on_the_last_user_message(
        runs: dict[str, Scenario]) -> None:
    runs["plain"].run()
    [request] = runs["plain"].fake.chat_requests()
    last = request.body["messages"][-1]
    assert last["role"] == "user"
    assert last["content"] == [
        {"type": "text", "text": "Now describe the image."},
        {"type": "image_url",
         "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
    ]


@pytest.mark.slow
def test_text_attachment_in_a_content_list_becomes_a_text_part(runs: dict[str, Scenario]) -> None:
    runs["plain"].run()
    [request] = runs["plain"].fake.chat_requests()
    first_user = request.body["messages"][1]
    assert first_user["content"] == [{"type": "text", "text": "Read my notes:"},
                                     {"type": "text", "text": NOTES}]
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.slow
def test_stream_writes_tokens_to_stdout_as_they_arrive(runs: dict[str, Scenario]) -> None:
    scenario = runs["stream"]
    run = scenario.run()
    assert run.exit_code == 0, run.stderr
    assert run.stdout.decode() == "one two three four five"
    assert run.text("text/response.txt") == "one two three four five"
    # the server sent each payload only after the tokens before it had reached stdout
    assert scenario.gates and all(scenario.gates)
    [request] = scenario.fake.chat_requests()
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}


@pytest.mark.slow
def test_stream_usage_is_in_the_result_and_an_unpriced_model_costs_null(
        runs: dict[str, Scenario]) -> None:
    run = runs["stream"].run()
    assert run.result is not None
    assert run.result["usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    assert run.result["cost_usd"] is None
    meta = run.json("metadata.json")
    assert meta["stream"] is True and meta["cost_usd"] is None
    assert "not priced" in meta["cost_note"]


@pytest.mark.slow
def test_theoryx_seed_is_not_sent_implicitly(runs: dict[str, Scenario]) -> None:
    runs["stream"].run()
    [request] = runs["stream"].fake.chat_requests()
    assert "seed" not in request.body


@pytest.mark.slow
@pytest.mark.parametrize(("name", "expected"), [
    ("401", "provider error: 401 authentication failed by gpt-4o-mini: Incorrect API key provided: ***."),
    ("429", "provider error: 429 rate limited by gpt-4o-mini: Rate limit reached for requests."),
    ("500", "provider error: 500 server error by gpt-4o-mini: "
            "The server had an error while processing your request."),
])
def test_provider_error_is_one_clear_line_exit_3_and_never_retried(
        runs: dict[str, Scenario], name: str, expected: str) -> None:
    run = runs[name].run()
    assert run.exit_code == run_py.EXIT_PROVIDER
    assert run.stderr.strip().splitlines() == [expected]
    assert API_KEY not in run.stderr
    assert len(runs[name].fake.chat_requests()) == 1
    assert run.outputs == {} and run.result is None and run.stdout == b""


def test_bad_inputs_exit_2_before_any_request(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        host = HostContract(tmp_path, RUN_PY, env={"OPENAI_API_KEY": API_KEY})
        blob = host.attach("blob.bin", b"\x00\x01\x02\xff", mime="application/octet-stream")
        started = time.monotonic()
        no_messages = host.run({"api_base": fake.url})
        binary = host.run({"messages": [{"role": "user", "content": "x"}], "attachments": [blob],
                           "api_base": fake.url})
        assert fake.chat_requests() == []
    assert no_messages.exit_code == binary.exit_code == run_py.EXIT_INPUTS
    assert no_messages.stderr.strip() == "bad inputs: 'messages' must be a non-empty list"
    assert "unsupported type application/octet-stream" in binary.stderr
    assert time.monotonic() - started < 10    # refused before LiteLLM is imported


# -- helpers, in-process --------------------------------------------------------------------

def _artifact(tmp_path: Path, name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    path = tmp_path / name
    path.write_bytes(data)
    return {"$artifact": str(path), "cid": "b3:" + "0" * 64, **extra}


def test_attachments_are_appended_to_the_last_user_message(tmp_path: Path) -> None:
    note = _artifact(tmp_path, "a.md", b"# Title\n")
    messages = run_py.build_messages({
        "messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                     {"role": "user", "content": "second"}, {"role": "assistant", "content": "k"}],
        "attachments": [note]})
    assert messages[0]["content"] == "first"
    assert messages[2]["content"] == [{"type": "text", "text": "second"},
                                      {"type": "text", "text": "# Title\n"}]
    assert messages[3]["content"] == "k"


def test_attachments_without_a_user_message_get_one(tmp_path: Path) -> None:
    note = _artifact(tmp_path, "a.txt", b"hello")
    messages = run_py.build_messages({"messages": [{"role": "system", "content": "s"}],
                                      "attachments": [note]})
    assert messages[-1] == {"role": "user", "content": [{"type": "text", "text": "hello"}]}


def test_inputs_are_not_modified(tmp_path: Path) -> None:
    note = _artifact(tmp_path, "a.txt", b"hello")
    inputs = {"messages": [{"role": "user", "content": note}]}
    before = json.dumps(inputs, sort_keys=True)
    assert run_py.build_messages(inputs)[0]["content"] == [{"type": "text", "text": "hello"}]
    assert json.dumps(inputs, sort_keys=True) == before


def test_pdf_becomes_a_file_part(tmp_path: Path) -> None:
    pdf = _artifact(tmp_path, "doc.pdf", b"%PDF-1.4\n%\xe2\xe3\n", mime="application/pdf")
    part = run_py.artifact_part(pdf)
    assert part["type"] == "file" and part["file"]["filename"] == "doc.pdf"
    assert part["file"]["file_data"].startswith("data:application/pdf;base64,")


def test_mime_comes_from_theoryx_then_suffix_then_content(tmp_path: Path) -> None:
    assert run_py.attachment_mime({"$artifact": "/x/a.bin", "mime": "Image/PNG; q=1"}, b"") == "image/png"
    assert run_py.attachment_mime({"$artifact": "/x/a.jpeg"}, b"\xff\xd8") == "image/jpeg"
    assert run_py.attachment_mime({"$artifact": "/x/README", "mime": "application/octet-stream"},
                                  b"plain words") == "text/plain"
    assert run_py.attachment_mime({"$artifact": "/x/blob"}, b"\x00\x01") == "application/octet-stream"


@pytest.mark.parametrize(("data", "extra", "message"), [
    (b"\xff\xfe\x00", {"mime": "text/plain"}, "not UTF-8 text"),
    (b"abc", {"size": 4}, "3 bytes, expected 4"),
    (b"\x00\x01", {}, "unsupported type application/octet-stream"),
])
def test_bad_attachments_are_refused(tmp_path: Path, data: bytes, extra: dict[str, Any],
                                     message: str) -> None:
    with pytest.raises(run_py.InputError, match=re.escape(message)):
        run_py.artifact_part(_artifact(tmp_path, "f", data, **extra))


def test_missing_attachment_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(run_py.InputError, match="attachment"):
        run_py.artifact_part({"$artifact": str(tmp_path / "missing.txt"), "cid": "b3:0"})


def test_completion_kwargs_send_only_what_the_inputs_set() -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    assert run_py.completion_kwargs(base, stream=False) == {
        "model": "gpt-4o-mini", "messages": base["messages"], "num_retries": 0, "max_retries": 0}
    kwargs = run_py.completion_kwargs({**base, "model": "anthropic/claude", "temperature": 0,
                                       "request_timeout": 12, "response_format": {"type": "json_object"}},
                                      stream=True)
    assert kwargs["temperature"] == 0 and kwargs["timeout"] == 12.0
    assert kwargs["response_format"] == {"type": "json_object"}
    assert kwargs["stream"] is True and kwargs["stream_options"] == {"include_usage": True}
    assert "seed" not in kwargs and "request_timeout" not in kwargs


@pytest.mark.parametrize("timeout", [0, -1, "30", True])
def test_bad_request_timeout_is_an_input_error(timeout: Any) -> None:
    with pytest.raises(run_py.InputError, match="request_timeout"):
        run_py.completion_kwargs({"messages": [{"role": "user", "content": "hi"}],
                                  "request_timeout": timeout}, stream=False)


def _chunk(content: str | None, usage: dict[str, int] | None = None) -> Any:
    choices = [] if content is None else [SimpleNamespace(delta=SimpleNamespace(content=content))]
    return SimpleNamespace(id="c-1", model="m-1", choices=choices,
                           usage=SimpleNamespace(**usage) if usage else None)


class _Out:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def test_a_stream_that_cannot_be_assembled_keeps_its_text_and_usage() -> None:
    usage = {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}

    def broken_builder(chunks: Any, messages: Any) -> Any:
        raise KeyError("choices")

    fake = SimpleNamespace(completion=lambda **kw: iter([_chunk("Hi"), _chunk(" you"), _chunk(None, usage)]),
                           stream_chunk_builder=broken_builder)
    out = _Out()
    reply = run_py.complete(fake, {"model": "m", "messages": [], "stream": True}, out)
    assert out.writes == ["Hi", " you"]
    assert (reply.text, reply.usage, reply.id, reply.cost_usd) == ("Hi you", usage, "c-1", None)
    assert reply.cost_note is not None and "could not assemble" in reply.cost_note


def test_contract_requires_inputs_and_write_prefix() -> None:
    with pytest.raises(run_py.InputError, match="THEORYX_WRITE_PREFIX"):
        run_py.Contract.from_env({"THEORYX_INPUTS": "/theoryx/inputs.json"})
    contract = run_py.Contract.from_env({"THEORYX_INPUTS": "/i.json", "THEORYX_WRITE_PREFIX": "/o/",
                                         "THEORYX_STREAM": "1"})
    assert contract.stream and contract.result is None


def _exc(qualified: str, *bases: type[BaseException], **attrs: Any) -> type[BaseException]:
    module, _, name = qualified.rpartition(".")
    return type(name, bases or (Exception,), {"__module__": module, **attrs})


# synthetic stand-ins with the class names LiteLLM 1.x, openai and httpx use
OpenAIError = _exc("openai.OpenAIError")
APIError = _exc("openai.APIError", OpenAIError)
APIStatusError = _exc("openai.APIStatusError", APIError)
APIConnectionError = _exc("openai.APIConnectionError", APIError)
APITimeoutError = _exc("openai.APITimeoutError", APIConnectionError)
HTTPStatusError = _exc("httpx.HTTPStatusError")
ConnectError = _exc("httpx.ConnectError")
InternalServerError = _exc("litellm.exceptions.InternalServerError", APIStatusError)
RateLimitError = _exc("litellm.exceptions.RateLimitError", APIStatusError)
LiteTimeout = _exc("litellm.exceptions.Timeout", APITimeoutError)


def _chain(*links: BaseException) -> BaseException:
    for outer, inner in itertools.pairwise(links):
        outer.__cause__ = inner
    return links[0]


def _status(cls: type[BaseException], status: int, message: str) -> BaseException:
    exc = cls(message)
    exc.status_code = status   # type: ignore[attr-defined]
    exc.message = message      # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(("exc", "kind"), [
    (_chain(_status(InternalServerError, 500, "x"), HTTPStatusError("500")), ("status", 500)),
    (_chain(_status(LiteTimeout, 504, "x"), HTTPStatusError("504")), ("status", 504)),
    (_chain(_status(InternalServerError, 500, "Connection error."), APIConnectionError(),
            ConnectError(), ConnectionRefusedError()), ("connection", None)),
    # the chain LiteLLM 1.110 raises for request_timeout (a real timeout costs a subprocess)
    (_chain(_status(LiteTimeout, 408, "x"), _exc("litellm.llms.openai.common_utils.OpenAIError")(),
            APITimeoutError(), _exc("httpx.ReadTimeout")(), TimeoutError()), ("timeout", None)),
    (_chain(_status(InternalServerError, 500, "Missing credentials."), OpenAIError()), ("failed", None)),
    (_status(RateLimitError, 429, "slow down"), ("status", 429)),
])
def test_classify_tells_http_answers_from_transport_failures(exc: BaseException,
                                                             kind: tuple[str, int | None]) -> None:
    assert run_py.classify(exc) == kind


def test_error_line_strips_litellm_prefixes_and_masks_secrets() -> None:
    exc = _chain(_status(RateLimitError, 429,
                         "litellm.RateLimitError: RateLimitError: OpenAIException - key sk-secret-123\n"
                         "  is over quota"), HTTPStatusError())
    line = run_py.provider_error_line(exc, "gpt-4o-mini", {"OPENAI_API_KEY": "sk-secret-123"})
    assert line == "provider error: 429 rate limited by gpt-4o-mini: key *** is over quota"


def test_error_line_names_connection_failures() -> None:
    exc = _chain(_status(InternalServerError, 500, "litellm.InternalServerError: Connection error."),
                 APIConnectionError(), ConnectError())
    line = run_py.provider_error_line(exc, "openai/local", {})
    assert line == "provider error: connection failed calling openai/local: Connection error."


def test_error_line_names_timeouts() -> None:
    exc = _chain(_status(LiteTimeout, 408, "litellm.Timeout: APITimeoutError - Request timed out."),
                 APITimeoutError(), TimeoutError())
    line = run_py.provider_error_line(exc, "gpt-4o-mini", {})
    assert line == "provider error: timed out calling gpt-4o-mini: Request timed out."


def test_cost_handles_unpriced_none_zero_and_invalid() -> None:
    def fake(result: Any) -> Any:
        def completion_cost(completion_response: Any) -> Any:
            if isinstance(result, Exception):
                raise result
            return result
        return SimpleNamespace(completion_cost=completion_cost)

    assert run_py.cost_of(fake(1.5e-06), None) == (1.5e-06, None)
    assert run_py.cost_of(fake(0.0), None) == (0.0, None)        # priced and free
    assert run_py.cost_of(fake(None), None) == (None, "not priced by LiteLLM")
    cost, note = run_py.cost_of(fake(ValueError("This model isn't mapped yet.")), None)
    assert cost is None and note is not None and "isn't mapped" in note
    assert run_py.cost_of(fake(float("nan")), None)[0] is None
    assert run_py.cost_of(fake(-1), None)[0] is None


def test_litellm_is_not_imported_by_the_helpers() -> None:
    source = RUN_PY.read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in top_level if "litellm" in line or "openai" in line]


def test_a_hostile_servers_answer_is_stored_safe_and_not_priced(runs: dict[str, Scenario]) -> None:
    """The server echoes the API key in its text and model name, sends a lone surrogate and
    claims 100M completion tokens for max_tokens 64: the run succeeds (exit 0, it did answer),
    the key is *** in every output, the surrogate is U+FFFD, and the usage is not priced (it
    used to crash on the surrogate, store the key, and charge $75 of invented tokens)."""
    run = runs["hostile"].run()
    assert run.exit_code == 0, run.stderr
    text = run.text("text/response.txt")
    assert API_KEY not in text and "your key is *** \ufffd lone" == text
    for path in ("metadata.json",):
        assert API_KEY not in run.text(path), run.text(path)
    meta = run.json("metadata.json")
    assert meta["cost_usd"] is None and "more than the max_tokens 64" in meta["cost_note"]
    assert API_KEY not in json.dumps(run.result) and run.result["cost_usd"] is None


def test_request_timeout_bounds_a_server_that_drips_its_answer(runs: dict[str, Scenario]) -> None:
    """One chunk a second, request_timeout 3: cut off after ~3 s with exit 3 (every single read
    was within the HTTP client's timeout, so it used to run to the end, or to the adapter's)."""
    run = runs["drip"].run()
    assert run.exit_code == 3, run.stderr
    assert "timed out" in run.stderr and "request_timeout (3 s)" in run.stderr, run.stderr
