"""``theoryx run`` without click: turning option values into a request, and printing results.

Shared by the click command (``run.py``) and the click-free fast path (``fast.py``) so both
produce byte-identical output.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theoryx.errors import InputsJsonError, TheoryxError, UsageError
from theoryx.pipeline.executor import RunRequest, RunResult, StreamFn
from theoryx.store.handle import Stores

SHOW_LIMIT = 4096


@dataclass(frozen=True)
class RunOptions:
    """The values of ``theoryx run``'s options (defaults as the CLI shows them)."""

    ref: str
    adapter: str = "local"
    plan: str | None = None
    write_prefix: str = "/artifacts/outputs/"
    inputs_json: str | None = None
    inputs_file: str | None = None
    adapter_opts_json: str | None = None
    attach: tuple[str, ...] = ()
    as_json: bool = False
    stream: bool = False
    no_cache: bool = False
    seed: int = 0
    salt: str = ""
    build: bool = False
    registry: str | None = None


def parse_json(text: str, what: str) -> Any:
    """``json.loads`` that says where the text is broken, and refuses NaN/Infinity."""

    def reject(const: str) -> Any:
        raise ValueError(f"{const} is not valid JSON")

    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as exc:
        raise InputsJsonError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    except ValueError as exc:
        raise InputsJsonError(f"{what} is not valid JSON: {exc}") from None


def read_inputs(inputs_json: str | None, inputs_file: str | None) -> Any:
    if inputs_json is not None and inputs_file is not None:
        raise UsageError("give either --inputs-json or --inputs-file, not both")
    if inputs_file is not None:
        try:
            text = sys.stdin.read() if inputs_file == "-" else Path(inputs_file).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read --inputs-file {inputs_file}: {exc.strerror}") from None
        return parse_json(text, f"--inputs-file {inputs_file}")
    return parse_json(inputs_json or "{}", "--inputs-json")


def streamer(to_stderr: bool) -> StreamFn:
    """Live output: stdout chunks to stdout (stderr under ``--json``), stderr chunks to stderr."""
    out = sys.stderr.buffer if to_stderr else sys.stdout.buffer

    def stream(channel: str, data: bytes) -> None:
        target = sys.stderr.buffer if channel == "stderr" else out
        target.write(data)
        target.flush()

    return stream


def build_request(o: RunOptions) -> RunRequest:
    """Validate option values into a :class:`RunRequest` (usage errors raise)."""
    from theoryx.pipeline import attachments, writeprefix

    writeprefix.check(o.write_prefix)
    if o.build and o.adapter == "mock":
        raise UsageError("--build rebuilds a container image: it applies to --adapter local or modal, not mock")
    inputs = read_inputs(o.inputs_json, o.inputs_file)
    opts = parse_json(o.adapter_opts_json, "--adapter-opts-json") if o.adapter_opts_json else {}
    if not isinstance(opts, dict):
        raise UsageError("--adapter-opts-json must be a JSON object")
    return RunRequest(
        ref=o.ref, inputs=inputs, attachments=attachments.parse_options(o.attach), adapter=o.adapter,
        plan=o.plan, write_prefix=o.write_prefix, seed=o.seed, salt=o.salt, no_cache=o.no_cache,
        adapter_options=opts, registry=o.registry, stream=streamer(o.as_json) if o.stream else None,
        build=o.build,
    )


def error_json(exc: TheoryxError) -> str:
    return json.dumps({"status": "error", "execution_id": exc.execution_id, "error": exc.to_dict()})


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime in ("application/json", "application/x-ndjson", "application/yaml")


def render(result: RunResult, stores: Stores, as_json: bool) -> str:
    """What ``theoryx run`` prints on stdout for a success."""
    if as_json:
        return json.dumps(result.to_json()) + "\n"
    lines = ["Processor completed successfully"]
    if result.cache == "hit":
        lines.append(f"Cache: hit (result of execution {result.record.source_execution}; nothing executed)")
    else:
        lines.append(f"Cache: miss (executed on {result.adapter} in {result.duration_ms} ms)")
    lines.append(f"Execution: {result.execution_id}")
    rec = result.record
    if rec.plan is not None:
        from theoryx.budget.money import dollars

        lines.append(f"Plan: {rec.plan} (charged {dollars(rec.cost_micros if rec.cache != 'hit' else 0)}, "
                     f"saved {dollars(rec.saved_micros)})")
    lines.append("Outputs:")
    for o in result.outputs:
        text = None
        if _is_text(o.mime) and o.size <= SHOW_LIMIT:
            try:
                text = stores.cas.read(o.cid).decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            lines.append(f"  {o.path}: {o.size} bytes, {o.mime} (theoryx cat {o.path})")
            continue
        lines.append(f"  {o.path}:")
        lines.extend(f"    {line}" for line in (text.rstrip("\n").splitlines() or [""]))
    return "\n".join(lines) + "\n"
