"""``theoryx run`` without click: from option values to a request, through the session, to
what is printed. The click command (:mod:`theoryx.cli.run`) and the fast path
(:mod:`theoryx.cli.fastpath`) both call :func:`run_command`, so their output is the same by
construction. Option values are keyed by the ``dest`` names of :data:`theoryx.cli.options.RUN_OPTIONS`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from theoryx.cli import messages, notices
from theoryx.cli.main import INTERRUPTED, stdin_bytes
from theoryx.core import strictjson
from theoryx.errors import InputsError, InputsJsonError, TheoryxError, UsageError
from theoryx.pipeline.request import MAX_INPUT_DEPTH, RunRequest, StreamFn, check_depth, check_unicode
from theoryx.pipeline.result import RunResult
from theoryx.pipeline.session import Session

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

SHOW_LIMIT = 4096


def parse_json(text: str, what: str) -> Any:
    """``json.loads`` that says where the text is broken, refuses NaN/Infinity, refuses an object
    that names a key twice (I-JSON, which RFC 8785 keys assume: ``ERR_INPUTS``) and nesting
    deeper than :data:`~theoryx.pipeline.request.MAX_INPUT_DEPTH` (``ERR_INPUTS``)."""
    try:
        value = strictjson.loads(text)
    except strictjson.DuplicateKey as exc:
        raise InputsError(f"{what} names the key {exc.key!r} twice in one object "
                          "(I-JSON forbids duplicate keys: which value was meant?)") from None
    except RecursionError:
        raise InputsError(f"{what} is nested deeper than {MAX_INPUT_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise InputsJsonError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    except ValueError as exc:
        raise InputsJsonError(f"{what} is not valid JSON: {exc}") from None
    check_depth(value, what)
    return value


def utf8_text(raw: bytes) -> str:
    """``raw`` decoded as UTF-8 (a leading byte-order mark dropped); :class:`InputsError`
    ``not UTF-8 (byte 0x.. at byte N)`` naming the first bad byte (N counts from 1)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputsError(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})") from None


def read_inputs(inputs_json: str | None, inputs_file: str | None) -> Any:
    if inputs_json is not None and inputs_file is not None:
        raise UsageError("give either --inputs-json or --inputs-file, not both")
    if inputs_file is not None:
        what = f"--inputs-file {inputs_file}"
        try:
            raw = stdin_bytes(what) if inputs_file == "-" else Path(inputs_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {what}: {exc.strerror}") from None
        try:
            text = utf8_text(raw)
        except InputsError as exc:
            raise InputsJsonError(f"{what} is {exc.message}") from None
        return parse_json(text, what)
    return parse_json(inputs_json or "{}", "--inputs-json")


def streamer(to_stderr: bool) -> StreamFn:
    """Live output: stdout chunks to stdout (stderr under ``--json``), stderr chunks to stderr."""
    out = sys.stderr.buffer if to_stderr else sys.stdout.buffer

    def stream(channel: str, data: bytes) -> None:
        target = sys.stderr.buffer if channel == "stderr" else out
        target.write(data)
        target.flush()

    return stream


def build_request(v: Mapping[str, Any]) -> RunRequest:
    """Validate option values into a :class:`RunRequest` (usage errors raise)."""
    from theoryx.pipeline import attachments, writeprefix

    writeprefix.check(v["write_prefix"])
    check_unicode("salt", v["salt"])    # --salt or THEORYX_SALT of bytes that are not UTF-8
    if v["build"] and v["adapter"] == "mock":
        raise UsageError("--build rebuilds a container image: it applies to --adapter local or modal, not mock")
    inputs = read_inputs(v["inputs_json"], v["inputs_file"])
    opts = parse_json(v["adapter_opts_json"], "--adapter-opts-json") if v["adapter_opts_json"] else {}
    if not isinstance(opts, dict):
        raise UsageError("--adapter-opts-json must be a JSON object")
    if v["plan"] is not None:        # a malformed key is a usage error before the home is opened
        from theoryx.budget.plans import check_key

        check_key(v["plan"])
    return RunRequest(
        ref=v["ref"], inputs=inputs, attachments=attachments.parse_options(v["attach"]), adapter=v["adapter"],
        plan=v["plan"], write_prefix=v["write_prefix"], seed=v["seed"], salt=v["salt"], no_cache=v["no_cache"],
        adapter_options=opts, registry=v["registry"], stream=streamer(v["as_json"]) if v["stream"] else None,
        build=v["build"], remote=v["remote"],
    )


def run_command(values: Mapping[str, Any]) -> int:
    """Carry out ``theoryx run`` with resolved option values (``home`` and ``registry`` already
    merged with the group's options); print the result or ``Error: ...``; return the exit code.
    SIGTERM is handled like Ctrl-C for the whole run (exit 143 instead of 130)."""
    with notices.shown(), _terminate_interrupts() as terminated:
        code = _run(values)
    return TERMINATED if terminated and code == INTERRUPTED else code


TERMINATED = 143
"""The exit code after SIGTERM (128 + 15, as a shell reports it)."""


@contextlib.contextmanager
def _terminate_interrupts() -> Iterator[list[int]]:
    """While the run is in flight, SIGTERM raises KeyboardInterrupt as Ctrl-C does, wherever the
    run is — building its image, vendoring, waiting for its container, recording — so that its
    workspace, lease, plan reservation and container are released as after Ctrl-C (the default
    disposition killed the process outside the container phase, leaving them to ``gc`` and
    ``plan reconcile``). Yields a list that receives the signal once it came. Only where SIGTERM
    has its default disposition (an embedding program's handler is left alone)."""
    got: list[int] = []

    def interrupt(signum: int, _frame: Any) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    installed = False
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):       # not the main thread: nothing to install
            signal.signal(signal.SIGTERM, interrupt)
            installed = True
    try:
        yield got
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(v: Mapping[str, Any]) -> int:
    try:
        try:
            from theoryx.cli.output import check_target

            if v["save_dir"]:
                check_target(Path(v["save_dir"]), what="--save-dir", directory=True)
            if v["save_first"]:
                check_target(Path(v["save_first"]), what="--save-first")
            req = build_request(v)     # usage errors before the home is opened (or created)
            session = Session(v["home"], registry=v["registry"])
            result = session.submit(req)
            if v["stream"]:
                (sys.stderr if v["as_json"] else sys.stdout).write("\n")
            with session.holding(result):
                if v["save_dir"] or v["save_first"]:
                    try:
                        save(result, v["save_dir"], v["save_first"], v["registry"], session)
                    except TheoryxError as exc:     # the run itself succeeded and is recorded
                        exc.execution_id = exc.execution_id or result.execution_id
                        rec = result.record         # what the envelope says it was charged
                        exc.plan, exc.cost_micros, exc.overrun_micros = rec.plan, rec.cost_micros, rec.overrun_micros
                        exc.exit_code = 1
                        raise
                text = render(result, v["as_json"])
        except TheoryxError:
            raise
        except Exception as unexpected:  # a bug, or an OS error nothing mapped: no traceback
            raise as_theoryx_error(unexpected) from unexpected
    except KeyboardInterrupt as stop:   # Ctrl-C: under --json the envelope still says what happened
        from theoryx.errors import interruption

        return _failed(v, interruption(stop))
    except TheoryxError as exc:
        return _failed(v, exc)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def _failed(v: Mapping[str, Any], exc: TheoryxError) -> int:
    """Report ``exc`` (its envelope on stdout under ``--json``, one line on stderr); its exit code."""
    if v["as_json"]:
        sys.stdout.write(json.dumps(exc.envelope(messages.to_dict(exc))) + "\n")
        sys.stdout.flush()
    sys.stderr.write(f"Error: {messages.message(exc)}\n")
    sys.stderr.flush()
    return exc.exit_code


def as_theoryx_error(exc: Exception) -> TheoryxError:
    """What the CLI reports for an exception that is not a :class:`TheoryxError`: a full disk as
    ``ERR_STORE_FULL``, anything else as ``ERR_INTERNAL`` with a crash file."""
    from theoryx.errors import StoreFull
    from theoryx.pipeline.session import store_full

    full = store_full(exc)
    if isinstance(full, StoreFull):
        return full
    from theoryx.cli.crash import internal_error

    return internal_error(exc)


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime in ("application/json", "application/x-ndjson", "application/yaml")


def render(result: RunResult, as_json: bool) -> str:
    """What ``theoryx run`` prints on stdout for a success."""
    if as_json:
        return json.dumps(result.to_json()) + "\n"
    lines = ["Processor completed successfully"]
    if result.cache == "hit":
        lines.append(f"Cache: hit (result of execution {result.record.source_execution}; nothing executed)")
    elif result.cache == "remote":
        lines.append(f"Cache: remote hit (result of execution {result.record.source_execution} from "
                     f"{result.record.remote_url}, verified; nothing executed)")
    else:
        how = "bypassed (not looked up; executed" if result.cache == "bypass" else "miss (executed"
        lines.append(f"Cache: {how} on {result.adapter}; the run took {result.duration_ms} ms in all)")
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
                text = result.output(o.path).bytes().decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            lines.append(f"  {o.path}: {o.size} bytes, {o.mime} (theoryx cat {o.path})")
            continue
        lines.append(f"  {o.path}:")
        lines.extend(f"    {line}" for line in (text.rstrip("\n").splitlines() or [""]))
    return "\n".join(lines) + "\n"


def save(result: RunResult, save_dir: str | None, save_first: str | None, registry: str | None,
         session: Session) -> None:
    """``--save-dir``: every output by its path below the write prefix; ``--save-first``: the
    first declared output (the spec's order), else the first produced."""
    from theoryx.cli.output import atomic_write

    if save_dir:
        for name in result.names():
            atomic_write(Path(save_dir) / name, result.output(name).bytes(), what="--save-dir")
    if save_first:
        if not result.outputs:
            raise UsageError("--save-first: the run produced no outputs")
        from theoryx.spec.refs import Ref
        from theoryx.spec.registry import Registry

        spec = Registry.from_option(registry).load(Ref.parse(result.ref), session.stores.db)
        names = result.names()
        first = next((d.path for d in spec.outputs if d.path in names), names[0])
        atomic_write(Path(save_first), result.output(first).bytes(), what="--save-first")
