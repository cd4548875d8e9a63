"""llm/litellm@1: one chat completion through LiteLLM, under the theoryx processor contract.

Reads (BUILD.md, "The processor contract"):

- ``THEORYX_INPUTS``: JSON with ``messages`` (required), ``model`` (default ``gpt-4o-mini``),
  ``attachments``, ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed``,
  ``response_format``, ``api_base``, ``request_timeout`` (seconds, sent as LiteLLM's ``timeout``);
- ``THEORYX_WRITE_PREFIX`` (required), ``THEORYX_RESULT`` (optional), ``THEORYX_STREAM``
  (``"1"``: ask the provider to stream and write each token to stdout as it arrives);
- the provider's secret by name, e.g. ``OPENAI_API_KEY``.

Writes, on success only:

- ``<prefix>/text/response.txt``: the response text, UTF-8, as received (a lone surrogate, which
  UTF-8 cannot hold, becomes U+FFFD; a secret's value echoed by the server becomes ``***``);
- ``<prefix>/metadata.json``: model, response model, provider, response id, finish reason, usage,
  cost (sorted keys, indented);
- ``THEORYX_RESULT``: ``{"usage": {...}, "cost_usd": float | null, "meta": {...}}``.
  ``cost_usd`` comes from ``litellm.completion_cost``; it is ``null`` (never a guess, never a
  crash) when LiteLLM has no price for the model, and when the usage the server reported cannot
  be true (a negative count, or more completion tokens than ``max_tokens`` allowed): then
  ``cost_note`` says why and theoryx judges the usage itself (and charges its reservation).

``request_timeout`` bounds the whole call, not only each read: a server that drips its answer
byte by byte is cut off when it passes (exit 3, "timed out").

stdout carries the response text (in one piece without streaming), nothing else; diagnostics go
to stderr.

Attachments: a ``{"$artifact": path, "cid", "mime", "size"}`` object used as a message's content,
as an item of a content list, or listed in ``attachments`` (appended to the last user message; a
user message is added if there is none) becomes a content part: ``image/*`` an ``image_url``
part with a ``data:<mime>;base64,...`` URL, ``application/pdf`` a ``file`` part with a data URL,
text (``text/*``, JSON, YAML, XML, ... or, without a usable mime, bytes that decode as UTF-8) a
``text`` part holding the file's text. Anything else is refused (exit 2).

``THEORYX_SEED`` is deliberately *not* forwarded as the provider's ``seed``: it already enters the
memo key, providers treat ``seed`` differently (OpenAI: best effort; others ignore it or reject
the parameter), and sending it implicitly would change every request body. Put ``seed`` in the
inputs to send one; it is then visible in the inputs and the memo key.

Requests are never retried (``num_retries=0``, ``max_retries=0``): a retry storm would multiply
cost and hide the provider's answer, and theoryx re-runs are explicit.

Worker mode (``THEORYX_WORKER=jsonl``, BUILD.md "Persistent workers"): the same program serves
one request per stdin line, answering ``{"id", "exit_code"}`` per line on stdout; each request is
exactly a one-shot run (the exit codes below), what it prints going to the request's
``stdout_path`` and ``stderr_path``. LiteLLM is imported once, by the first request.

Exit codes:

- 0: success, outputs and result written;
- 1: unexpected error (a bug): Python traceback on stderr;
- 2: bad inputs or contract environment, nothing sent: ``bad inputs: ...`` on stderr;
- 3: the provider call failed (HTTP error status, timeout, connection failure, missing credentials,
  request refused by LiteLLM): one line on stderr, e.g.
  ``provider error: 429 rate limited by gpt-4o-mini: Rate limit reached for requests.``
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TextIO, TypeGuard

DEFAULT_MODEL = "gpt-4o-mini"
EXIT_OK, EXIT_BUG, EXIT_INPUTS, EXIT_PROVIDER = 0, 1, 2, 3
RESPONSE_PATH = "text/response.txt"
METADATA_PATH = "metadata.json"

# inputs forwarded to litellm.completion under the same name
_FORWARDED = ("temperature", "top_p", "max_tokens", "stop", "seed", "response_format", "api_base")
_SUFFIX_MIME = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".pdf": "application/pdf", ".txt": "text/plain",
    ".md": "text/markdown", ".csv": "text/csv", ".tsv": "text/tab-separated-values",
    ".json": "application/json", ".jsonl": "application/jsonl", ".yaml": "application/yaml",
    ".yml": "application/yaml", ".xml": "application/xml", ".html": "text/html",
    ".py": "text/x-python", ".toml": "application/toml", ".log": "text/plain",
}
_TEXT_APPLICATION = frozenset({
    "application/json", "application/jsonl", "application/x-ndjson", "application/xml",
    "application/yaml", "application/x-yaml", "application/toml", "application/javascript",
    "application/x-python", "application/x-sh", "application/sql", "application/csv",
})
_STATUS_LABEL = {
    400: "bad request", 401: "authentication failed", 402: "payment required",
    403: "permission denied", 404: "not found", 408: "timed out", 409: "conflict",
    413: "request too large", 422: "unprocessable request", 429: "rate limited",
    500: "server error", 502: "bad gateway", 503: "service unavailable",
    504: "gateway timeout",
}
# LiteLLM classes whose status may be LiteLLM's own choice rather than an HTTP answer
_AMBIGUOUS_STATUS = frozenset({"InternalServerError", "BadRequestError", "APIError"})
_TIMEOUTS = frozenset({"builtins.TimeoutError", "httpx.TimeoutException", "openai.APITimeoutError"})
_CONNECTION = frozenset({"openai.APIConnectionError", "httpx.TransportError",
                         "builtins.ConnectionError", "httpcore.NetworkError"})
# raised by httpx when a response arrived; LiteLLM's and openai's status classes are no evidence
# (LiteLLM reports a refused connection as InternalServerError, an openai.APIStatusError)
_HTTP_ANSWER = frozenset({"httpx.HTTPStatusError"})
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_EXC_PREFIX = re.compile(r"^(?:litellm\.)?\w*(?:Error|Exception|Timeout)\s*[:\-]\s*")


class InputError(Exception):
    """Bad inputs or contract environment: exit 2, nothing was sent."""


@dataclass(frozen=True)
class Contract:
    """The contract environment of one run."""

    inputs: Path
    write_prefix: Path
    result: Path | None
    stream: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Contract:
        """Read ``THEORYX_*``; raises :class:`InputError` when a required variable is missing."""
        missing = [n for n in ("THEORYX_INPUTS", "THEORYX_WRITE_PREFIX") if not env.get(n)]
        if missing:
            raise InputError(f"contract variable(s) not set: {', '.join(missing)}")
        result = env.get("THEORYX_RESULT")
        return cls(Path(env["THEORYX_INPUTS"]), Path(env["THEORYX_WRITE_PREFIX"]),
                   Path(result) if result else None, env.get("THEORYX_STREAM") == "1")


@dataclass
class Reply:
    """What the provider answered, reduced to what theoryx records."""

    text: str
    model: str                    # the model the inputs asked for
    response_model: str | None
    provider: str | None
    id: str | None
    finish_reason: str | None
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    cost_note: str | None = None
    system_fingerprint: str | None = None

    def metadata(self, stream: bool) -> dict[str, Any]:
        """The body of ``metadata.json``."""
        meta = {"model": self.model, "response_model": self.response_model,
                "provider": self.provider, "id": self.id, "finish_reason": self.finish_reason,
                "usage": self.usage, "cost_usd": self.cost_usd, "stream": stream,
                "system_fingerprint": self.system_fingerprint}
        if self.cost_note:
            meta["cost_note"] = self.cost_note
        return meta

    def result(self) -> dict[str, Any]:
        """The body of ``THEORYX_RESULT``."""
        return {"usage": self.usage, "cost_usd": self.cost_usd,
                "meta": {"model": self.model, "response_model": self.response_model,
                         "provider": self.provider, "id": self.id,
                         "finish_reason": self.finish_reason}}


# -- inputs -> request --------------------------------------------------------------------

def load_inputs(path: Path) -> dict[str, Any]:
    """Parse the inputs JSON; it must be an object with a non-empty ``messages`` list."""
    try:
        inputs = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(inputs, dict):
        raise InputError("inputs must be a JSON object")
    messages = inputs.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("'messages' must be a non-empty list")
    if not all(isinstance(m, dict) and "role" in m for m in messages):
        raise InputError("every message must be an object with a 'role'")
    return inputs


def is_artifact(value: Any) -> TypeGuard[dict[str, Any]]:
    """True for a rewritten attachment ``{"$artifact": "/artifacts/inputs/<cid>/<file>", ...}``."""
    return isinstance(value, dict) and isinstance(value.get("$artifact"), str)


def attachment_mime(artifact: Mapping[str, Any], data: bytes) -> str:
    """The attachment's mime: the one theoryx recorded, else from the file suffix, else sniffed
    (UTF-8 without NUL bytes is ``text/plain``). Deterministic: no system mime tables."""
    declared = str(artifact.get("mime") or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    suffix = PurePosixPath(artifact["$artifact"]).suffix.lower()
    if suffix in _SUFFIX_MIME:
        return _SUFFIX_MIME[suffix]
    return "text/plain" if _utf8_text(data) is not None else "application/octet-stream"


def is_text_mime(mime: str) -> bool:
    """Mimes whose bytes are sent to the model as text."""
    return (mime.startswith("text/") or mime in _TEXT_APPLICATION
            or mime.endswith("+json") or mime.endswith("+xml"))


def artifact_part(artifact: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI-style content part for one attachment; raises :class:`InputError` for an
    unreadable, size-mismatched or unsupported file."""
    path = Path(artifact["$artifact"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"attachment {path}: {exc.strerror or exc}") from exc
    size = artifact.get("size")
    if isinstance(size, int) and size != len(data):
        raise InputError(f"attachment {path}: {len(data)} bytes, expected {size}")
    mime = attachment_mime(artifact, data)
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": _data_url(mime, data)}}
    if mime == "application/pdf":
        return {"type": "file", "file": {"file_data": _data_url(mime, data), "filename": path.name}}
    if is_text_mime(mime):
        text = _utf8_text(data)
        if text is None:
            raise InputError(f"attachment {path}: declared {mime} but is not UTF-8 text")
        return {"type": "text", "text": text}
    raise InputError(f"attachment {path}: unsupported type {mime} "
                     "(supported: image/*, application/pdf, UTF-8 text)")


def build_messages(inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's messages: a copy of ``inputs["messages"]`` with every ``$artifact`` turned
    into a content part and ``inputs["attachments"]`` appended to the last user message."""
    messages: list[dict[str, Any]] = json.loads(json.dumps(inputs["messages"]))
    for message in messages:
        content = message.get("content")
        if is_artifact(content):
            message["content"] = [artifact_part(content)]
        elif isinstance(content, list):
            message["content"] = [artifact_part(p) if is_artifact(p) else p for p in content]
    attachments = inputs.get("attachments") or []
    if not isinstance(attachments, list) or not all(is_artifact(a) for a in attachments):
        raise InputError("'attachments' must be a list of $artifact objects")
    if attachments:
        parts = [artifact_part(a) for a in attachments]
        users = [m for m in messages if m.get("role") == "user"]
        if not users:
            messages.append({"role": "user", "content": parts})
        else:
            last = users[-1]
            content = last.get("content")
            if isinstance(content, list):
                last["content"] = [*content, *parts]
            elif content in (None, ""):
                last["content"] = parts
            else:
                last["content"] = [{"type": "text", "text": str(content)}, *parts]
    return messages


def completion_kwargs(inputs: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """Keyword arguments for ``litellm.completion``: model, messages, the optional sampling and
    endpoint inputs that are set, no retries; streaming with usage when ``stream``."""
    model = inputs.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        raise InputError("'model' must be a string")
    kwargs: dict[str, Any] = {"model": model, "messages": build_messages(inputs),
                              "num_retries": 0, "max_retries": 0}
    kwargs.update({k: inputs[k] for k in _FORWARDED if inputs.get(k) is not None})
    timeout = inputs.get("request_timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InputError(f"'request_timeout' must be a positive number, got {timeout!r}")
        kwargs["timeout"] = float(timeout)
    if stream:
        kwargs.update(stream=True, stream_options={"include_usage": True})
    return kwargs


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _utf8_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


# -- provider errors ----------------------------------------------------------------------

def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes/contexts, outermost first (cycle-safe)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _class_names(exc: BaseException) -> set[str]:
    return {f"{c.__module__}.{c.__name__}" for c in type(exc).__mro__}


def classify(exc: BaseException) -> tuple[str, int | None]:
    """``(kind, status)`` of a failed provider call. ``kind`` is ``"status"`` (the provider
    answered with HTTP ``status``), ``"timeout"``, ``"connection"`` or ``"failed"`` (no answer,
    e.g. missing credentials or a request LiteLLM refused to send). Works on class names along
    the exception chain, so it needs neither litellm nor openai imported."""
    names = set().union(*(_class_names(link) for link in exception_chain(exc)))
    top_status = getattr(exc, "status_code", None)
    status = top_status if isinstance(top_status, int) else None
    if names & _HTTP_ANSWER:
        if status is None:
            answered = (getattr(link, "status_code", None) for link in exception_chain(exc))
            status = next((s for s in answered if isinstance(s, int)), None)
        return ("status", status) if status is not None else ("failed", None)
    if names & _TIMEOUTS:
        return "timeout", None
    if names & _CONNECTION:
        return "connection", None
    if status is not None and type(exc).__name__ not in _AMBIGUOUS_STATUS:
        return "status", status
    return "failed", None


def provider_error_line(exc: BaseException, model: str, env: Mapping[str, str]) -> str:
    """One line for stderr naming what failed, e.g.
    ``provider error: 429 rate limited by gpt-4o-mini: Rate limit reached.``; secret values
    found in ``env`` are masked."""
    kind, status = classify(exc)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = " ".join(str(message).split())
    while (stripped := _EXC_PREFIX.sub("", message, count=1)) != message and stripped:
        message = stripped
    message = redact(message, env)[:1000]
    if kind == "status":
        label = _STATUS_LABEL.get(status or 0, "HTTP error")
        return f"provider error: {status} {label} by {model}: {message}"
    if kind == "timeout":
        return f"provider error: timed out calling {model}: {message}"
    if kind == "connection":
        return f"provider error: connection failed calling {model}: {message}"
    return f"provider error: request to {model} failed: {message}"


def redact(text: str, env: Mapping[str, str]) -> str:
    """``text`` with the values of secret-looking environment variables replaced by ``***``."""
    for name, value in env.items():
        if _SECRET_NAME.search(name) and len(value) >= 6:
            text = text.replace(value, "***")
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_safe(text: str) -> str:
    """``text`` with every lone surrogate (a server may send ``"\\ud800"`` in JSON) replaced
    by U+FFFD, so that it encodes as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def usage_problem(usage: Mapping[str, int], max_tokens: Any) -> str | None:
    """Why the server's ``usage`` cannot be true, or None: a negative count, or a completion
    longer than the ``max_tokens`` the request allowed."""
    for name, count in usage.items():
        if count < 0:
            return f"usage.{name} is negative ({count})"
    completion = usage.get("completion_tokens", 0)
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 0 < max_tokens < completion:
        return f"usage.completion_tokens {completion} is more than the max_tokens {max_tokens} asked for"
    return None


# -- calling LiteLLM ----------------------------------------------------------------------

def emit(out: TextIO, text: str) -> None:
    """Write ``text`` to ``out`` as UTF-8 whatever the locale, and flush (live streaming)."""
    text = utf8_safe(text)
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        buffer.write(text.encode("utf-8"))
        buffer.flush()
    else:
        out.write(text)
        out.flush()


def usage_of(response: Any) -> dict[str, int]:
    """``prompt_tokens``/``completion_tokens``/``total_tokens`` of a response; ``{}`` if the
    provider sent no usage."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return {}
    counts = {k: getattr(usage, k, None) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if all(v is None for v in counts.values()):
        return {}
    return {k: int(v or 0) for k, v in counts.items()}


def cost_of(litellm: Any, response: Any) -> tuple[float | None, str | None]:
    """``(cost_usd, note)``: LiteLLM's price for the response, or ``(None, why)`` when the model
    is not priced or the computation fails. A priced model may legitimately cost 0.0."""
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception as exc:  # ModelNotMappedError and friends: report, never crash
        return None, "not priced by LiteLLM: " + " ".join(str(exc).split())[:300]
    if cost is None:
        return None, "not priced by LiteLLM"
    cost = float(cost)
    if not math.isfinite(cost) or cost < 0:
        return None, f"LiteLLM returned an invalid cost {cost!r}"
    return cost, None


def reply_from(litellm: Any, response: Any, model: str, text: str | None = None, max_tokens: Any = None) -> Reply:
    """Reduce a LiteLLM ``ModelResponse`` to a :class:`Reply` (``text`` overrides the message
    content, for streams). A usage that cannot be true (:func:`usage_problem`) is not priced."""
    choice = response.choices[0] if getattr(response, "choices", None) else None
    if text is None:
        message = getattr(choice, "message", None)
        text = (getattr(message, "content", None) or "") if message is not None else ""
    hidden = getattr(response, "_hidden_params", None) or {}
    usage = usage_of(response)
    problem = usage_problem(usage, max_tokens)
    cost, note = (None, f"not priced: {problem}") if problem else cost_of(litellm, response)
    return Reply(text=utf8_safe(str(text)), model=model, response_model=getattr(response, "model", None),
                 provider=hidden.get("custom_llm_provider"), id=getattr(response, "id", None),
                 finish_reason=getattr(choice, "finish_reason", None), usage=usage,
                 cost_usd=cost, cost_note=note,
                 system_fingerprint=getattr(response, "system_fingerprint", None))


def complete(litellm: Any, kwargs: dict[str, Any], out: TextIO) -> Reply:
    """Call the provider once; the response text goes to ``out`` (token by token if streaming)."""
    model, max_tokens = kwargs["model"], kwargs.get("max_tokens")
    if not kwargs.get("stream"):
        reply = reply_from(litellm, litellm.completion(**kwargs), model, max_tokens=max_tokens)
        emit(out, reply.text)
        return reply
    chunks: list[Any] = []
    pieces: list[str] = []
    for chunk in litellm.completion(**kwargs):
        chunks.append(chunk)
        delta = chunk.choices[0].delta.content if getattr(chunk, "choices", None) else None
        if delta:
            emit(out, delta)
            pieces.append(delta)
    text, note = "".join(pieces), "empty stream"
    try:
        built = litellm.stream_chunk_builder(chunks, messages=kwargs["messages"]) if chunks else None
    except Exception as exc:   # keep the response already streamed rather than crash
        built, note = None, "could not assemble the stream: " + " ".join(str(exc).split())[:300]
    if built is None:
        return Reply(text=text, model=model, response_model=getattr(chunks[-1], "model", None) if chunks else None,
                     provider=None, id=getattr(chunks[0], "id", None) if chunks else None,
                     finish_reason=None, usage=_last_usage(chunks), cost_note=note)
    reply = reply_from(litellm, built, model, text=text, max_tokens=max_tokens)
    if not reply.usage:   # the builder normally carries it; else take the last chunk's
        reply.usage = _last_usage(chunks)
        problem = usage_problem(reply.usage, max_tokens)
        if problem:
            reply.cost_usd, reply.cost_note = None, f"not priced: {problem}"
    return reply


def _last_usage(chunks: list[Any]) -> dict[str, int]:
    return next((u for u in map(usage_of, reversed(chunks)) if u), {})


def write_outputs(contract: Contract, reply: Reply, env: Mapping[str, str]) -> None:
    """Write ``text/response.txt``, ``metadata.json`` and the result file; every secret value
    of ``env`` the server echoed (in the text, the id, the model name, ...) is ``***`` there, as
    it is in the logs: outputs are cached and may be shared with a team."""
    response = contract.write_prefix / RESPONSE_PATH
    response.parent.mkdir(parents=True, exist_ok=True)
    response.write_bytes(redact(reply.text, env).encode("utf-8"))
    metadata = redact(json.dumps(reply.metadata(contract.stream), indent=2, sort_keys=True), env) + "\n"
    (contract.write_prefix / METADATA_PATH).write_text(metadata, encoding="utf-8")
    if contract.result is not None:
        contract.result.parent.mkdir(parents=True, exist_ok=True)
        contract.result.write_text(redact(json.dumps(reply.result(), sort_keys=True), env), encoding="utf-8")


def main(env: Mapping[str, str] | None = None) -> int:
    """Run one completion under the contract; returns the exit code (see module docstring)."""
    env = os.environ if env is None else env
    try:
        contract = Contract.from_env(env)
        kwargs = completion_kwargs(load_inputs(contract.inputs), contract.stream)
    except InputError as exc:
        print(f"bad inputs: {exc}", file=sys.stderr)
        return EXIT_INPUTS
    # Never fetch the price map from the internet (the container may have no route there).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    import openai

    litellm.suppress_debug_info = True   # otherwise "Give Feedback" banners land on stdout
    try:
        with deadline(kwargs.get("timeout")):
            reply = complete(litellm, kwargs, sys.stdout)
    except (openai.OpenAIError, RequestTimeout) as exc:   # every LiteLLM provider exception derives from the first
        expired = next((link for link in exception_chain(exc) if isinstance(link, RequestTimeout)), None)
        if expired is not None:         # LiteLLM may wrap it (as a 500): it is our deadline
            print(f"provider error: timed out calling {kwargs['model']}: {expired}", file=sys.stderr)
        else:
            print(provider_error_line(exc, kwargs["model"], env), file=sys.stderr)
        return EXIT_PROVIDER
    write_outputs(contract, reply, env)
    return EXIT_OK


class RequestTimeout(Exception):
    """The whole call took longer than ``request_timeout`` (:func:`deadline`)."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`RequestTimeout` in the block once ``seconds`` have passed (the HTTP
    client's own timeout bounds each read, not a server that drips its answer). SIGALRM raises
    it wherever the call is, again every 0.25 s (library code that catches every exception may
    swallow one), and leaving the block late raises it too. No-op without ``seconds``; off the
    main thread only the check on leaving applies."""
    import signal
    import threading
    import time

    if not seconds:
        yield
        return
    message = f"no complete answer within request_timeout ({seconds:g} s)"
    end = time.monotonic() + seconds
    on_main = threading.current_thread() is threading.main_thread()

    def expired(signum: int, frame: Any) -> None:
        raise RequestTimeout(message)

    previous = signal.signal(signal.SIGALRM, expired) if on_main else None
    if on_main:
        signal.setitimer(signal.ITIMER_REAL, seconds, 0.25)
    try:
        yield
    finally:
        while on_main:          # an alarm raising during this cleanup must not skip it
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                break
            except RequestTimeout:
                continue
    if time.monotonic() > end:      # the answer came, but too late: swallowed alarms included
        raise RequestTimeout(message)


# -- persistent worker mode (BUILD.md, "Persistent workers") -------------------------------

def request_env(env: Mapping[str, str], request: Mapping[str, Any]) -> dict[str, str]:
    """The contract environment of one worker request: the worker's own environment (secrets
    included) with the request's paths, seed and execution id."""
    return {**env, "THEORYX_INPUTS": str(request["inputs_path"]),
            "THEORYX_WRITE_PREFIX": str(request["outputs_dir"]),
            "THEORYX_RESULT": str(request["result_path"]), "THEORYX_SEED": str(request["seed"]),
            "THEORYX_EXECUTION_ID": str(request["execution_id"]), "THEORYX_STREAM": "0"}


@contextlib.contextmanager
def redirected(stdout_path: str, stderr_path: str) -> Iterator[None]:
    """File descriptors 1 and 2 (so ``sys.stdout``, ``sys.stderr`` and any library writing to
    them) pointed at one request's log files for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        for fd, path in ((1, stdout_path), (2, stderr_path)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def serve(requests: BinaryIO, answers: TextIO, env: Mapping[str, str] | None = None) -> int:
    """Serve requests until end of input (``THEORYX_WORKER=jsonl``): one JSON request per line
    on ``requests``, one JSON answer ``{"id", "exit_code"[, "error"]}`` per line on ``answers``.
    Each request runs :func:`main` under its own paths, what it prints going to the request's
    ``stdout_path`` and ``stderr_path``; nothing is kept between requests."""
    env = os.environ if env is None else env
    for raw in requests:
        if not raw.strip():
            continue
        answer: dict[str, Any]
        request: Any = None
        try:
            request = json.loads(raw)
            rid = request["id"]
            renv = request_env(env, request)
            logs = str(request["stdout_path"]), str(request["stderr_path"])
        except (ValueError, KeyError, TypeError) as exc:
            rid = request.get("id") if isinstance(request, dict) else None
            answer = {"id": rid, "exit_code": EXIT_INPUTS, "error": f"malformed request: {exc!r}"}
        else:
            with redirected(*logs):
                try:
                    code = main(renv)
                except Exception:   # a bug: the traceback goes to the request's stderr, the worker goes on
                    traceback.print_exc()
                    code = EXIT_BUG
            answer = {"id": rid, "exit_code": code}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return EXIT_OK


def serve_stdio() -> int:
    """:func:`serve` on the process's stdin and stdout. File descriptor 1 is pointed at stderr
    first, so that nothing but answers (not even a library writing to fd 1) reaches stdout."""
    sys.stdout.flush()
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    sys.exit(serve_stdio() if os.environ.get("THEORYX_WORKER") == "jsonl" else main())
