"""An OpenAI-compatible chat completions server for tests (standard library only).

:class:`FakeOpenAI` listens on ``127.0.0.1`` (port 0 = any free port) in a background thread and
answers like the OpenAI API::

    with FakeOpenAI(reply_text="Hello there") as fake:
        ...  # point a client at fake.url, e.g. http://127.0.0.1:43117/v1
        assert fake.chat_requests()[0].body["model"] == "gpt-4o-mini"

Endpoints:

- ``POST /v1/chat/completions`` (also without ``/v1``): a ``chat.completion`` object, or with
  ``"stream": true`` Server-Sent Events: one ``chat.completion.chunk`` per token of
  ``reply_text`` (whitespace kept, so the deltas join back to ``reply_text`` exactly), a chunk
  carrying ``finish_reason``, a ``choices: []`` chunk with ``usage`` when the request had
  ``stream_options.include_usage``, then ``data: [DONE]``.
- ``GET /v1/models``: a one-model list.
- anything else: 404 with an OpenAI-style error body.

Behaviour is programmable through attributes that may be changed between requests: ``reply_text``,
``status`` (a non-200 value answers every chat request with an OpenAI-style error JSON, e.g.
401/429/500/503), ``error_message``, ``delay`` (seconds before answering), ``chunk_delay``
(seconds between stream chunks), ``prompt_tokens``/``completion_tokens`` (usage numbers),
``model`` (``None`` echoes the request's model), ``finish_reason``, and ``gate``: a callable
given the text streamed so far, called before each later stream payload; a test can block in it
until that text reached the client's stdout, which proves the client streams live.

Every request is recorded in ``.requests`` (method, path, lower-cased headers, parsed JSON body)
and, if ``record_path`` is set, appended to that file as one JSON line (for containers that talk
to a server started as a script).

Run as a script for tests that need a separate process (e.g. a container on the host network)::

    python tests/fakes/openai_server.py --host 127.0.0.1 --port 0 [--reply TEXT] [--status N]
        [--delay S] [--record requests.jsonl]

It prints ``listening on http://HOST:PORT/v1`` on stdout (flushed) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

CREATED = 1_700_000_000   # fixed timestamp: responses stay reproducible
_TOKEN = re.compile(r"\s*\S+\s*|\s+")
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_MODELS_PATHS = ("/v1/models", "/models")

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, default message) as the OpenAI API sends them
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_denied", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it. ``body`` is the parsed JSON (``None`` if empty)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeOpenAI:
    """A programmable OpenAI-compatible server; see the module docstring."""

    reply_text: str = "Hello from the fake OpenAI server."
    status: int = 200
    error_message: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int | None = None      # None: the number of stream tokens of reply_text
    model: str | None = None                  # None: echo the request's model
    finish_reason: str = "stop"
    gate: Callable[[str], None] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    record_path: Path | None = None
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to give clients as ``api_base``, e.g. ``http://127.0.0.1:43117/v1``."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://{self.host}:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (wakes handlers sleeping in ``delay``)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- records ---------------------------------------------------------------------------

    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded chat completion requests, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    def reset(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            if self.record_path is not None:
                with open(self.record_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(asdict(request), sort_keys=True) + "\n")

    def _next_id(self) -> str:
        with self._lock:
            self._counter += 1
            return f"chatcmpl-fake-{self._counter}"

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- payloads --------------------------------------------------------------------------

    def tokens(self) -> list[str]:
        """``reply_text`` cut into stream deltas; ``"".join(tokens()) == reply_text``."""
        return _TOKEN.findall(self.reply_text)

    def usage(self) -> dict[str, int]:
        """The usage block every successful response carries."""
        completion = (self.completion_tokens if self.completion_tokens is not None
                      else len(self.tokens()))
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def error_body(self) -> dict[str, Any]:
        """The OpenAI-style error object sent with a non-200 ``status``."""
        kind, code, message = _ERRORS.get(self.status, ("server_error", None, "Error."))
        return {"error": {"message": self.error_message or message, "type": kind,
                          "param": None, "code": code}}

    def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        """A non-streaming ``chat.completion`` answering ``request``."""
        return {
            "id": self._next_id(), "object": "chat.completion", "created": CREATED,
            "model": self.model or request.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "logprobs": None, "finish_reason": self.finish_reason,
                         "message": {"role": "assistant", "content": self.reply_text}}],
            "usage": self.usage(),
        }

    def chunks(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``chat.completion.chunk`` events of a streamed answer to ``request``."""
        base = {"id": self._next_id(), "object": "chat.completion.chunk", "created": CREATED,
                "model": self.model or request.get("model", "fake-model"),
                "system_fingerprint": "fp_fake"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish}]}

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": t}) for t in self.tokens()]
        events.append(chunk({}, self.finish_reason))
        if (request.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": self.usage()})
        return events


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass   # keep test output clean

    def do_GET(self) -> None:
        fake = self.server.fake
        fake._record(RecordedRequest("GET", self.path, self._headers(), None))
        if self.path.rstrip("/") in _MODELS_PATHS:
            model = fake.model or "gpt-4o-mini"
            self._json(200, {"object": "list", "data": [
                {"id": model, "object": "model", "created": CREATED, "owned_by": "fake"}]})
        else:
            self._json(404, _not_found(self.path))

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        fake._record(RecordedRequest("POST", self.path, self._headers(), body))
        fake._sleep(fake.delay)
        if self.path.split("?")[0].rstrip("/") not in _CHAT_PATHS:
            self._json(404, _not_found(self.path))
        elif not isinstance(body, dict):
            self._json(400, {"error": {"message": "request body is not a JSON object",
                                       "type": "invalid_request_error", "param": None,
                                       "code": None}})
        elif fake.status != 200:
            self._json(fake.status, fake.error_body())
        elif body.get("stream"):
            self._stream(fake.chunks(body))
        else:
            self._json(200, fake.completion(body))

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True     # the client gave up (e.g. its timeout)

    def _stream(self, events: list[dict[str, Any]]) -> None:
        fake = self.server.fake
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = ""
            for i, event in enumerate([*events, None]):
                if i:
                    fake._sleep(fake.chunk_delay)
                if fake.gate is not None and sent:
                    fake.gate(sent)
                data = f"data: {'[DONE]' if event is None else json.dumps(event)}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                if event is not None and event["choices"]:
                    sent += event["choices"][0]["delta"].get("content") or ""
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _not_found(path: str) -> dict[str, Any]:
    return {"error": {"message": f"Unknown request URL: {path}", "type": "invalid_request_error",
                      "param": None, "code": "unknown_url"}}


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print the base URL first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default=FakeOpenAI.reply_text)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--error-message", default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--prompt-tokens", type=int, default=11)
    parser.add_argument("--record", type=Path, default=None, help="append requests as JSON lines")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(reply_text=args.reply, status=args.status, error_message=args.error_message,
                      delay=args.delay, chunk_delay=args.chunk_delay,
                      prompt_tokens=args.prompt_tokens, host=args.host, port=args.port,
                      record_path=args.record)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with fake:
        print(f"listening on {fake.url}", flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
