"""The adapter protocol: one method, ``execute(request) -> Outcome``.

The executor prepares a :class:`Workspace` (a private directory on the CAS's filesystem) and an
:class:`ExecRequest`; the adapter runs the processor under the processor contract (BUILD.md, "The processor contract")
and reports an :class:`Outcome`. Adapters raise only theoryx errors (foreign exceptions are
mapped at the adapter's edge) and only for infrastructure problems (no engine, no image); a
processor that ran and failed, timed out or was OOM-killed is reported in the Outcome so that its
logs are still captured.

Contract inside the container (world paths, never host paths):

- ``/artifacts/inputs/<cid>/<file>``: referenced attachments, read-only;
- ``THEORYX_INPUTS``: path of the rewritten inputs JSON (``/theoryx/inputs.json``);
- ``THEORYX_WRITE_PREFIX``: the write prefix (e.g. ``/artifacts/outputs/``), an empty
  writable directory; every file left there becomes an output at that world path;
- ``THEORYX_RESULT``: ``/theoryx/result/result.json``, optional ``{"usage", "cost_usd", "meta"}``;
- ``THEORYX_SEED``, ``THEORYX_EXECUTION_ID``, ``THEORYX_REF``, ``THEORYX_STREAM`` ("1" when the
  user asked for streaming); secrets as environment variables by name.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from theoryx.adapters.logs import LogCapture
from theoryx.errors import AdapterOptionsError, ExecutionCancelled
from theoryx.spec.model import ProcessorSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from theoryx.spec.context import ContextManifest

CONTAINER_INPUTS_DIR = "/artifacts/inputs"
CONTAINER_INPUTS_JSON = "/theoryx/inputs.json"
CONTAINER_RESULT_DIR = "/theoryx/result"
CONTAINER_RESULT = CONTAINER_RESULT_DIR + "/result.json"


@dataclass(frozen=True)
class Workspace:
    """Host directories of one run. ``outputs`` starts empty; ``inputs/<cid>/<file>`` holds the
    referenced attachments (hard links from the CAS, read-only)."""

    root: Path

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def inputs_json(self) -> Path:
        return self.root / "inputs.json"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def result_dir(self) -> Path:
        return self.root / "result"

    @property
    def result(self) -> Path:
        return self.result_dir / "result.json"

    @property
    def stdout(self) -> Path:
        return self.root / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.root / "stderr.log"

    def log(self, stream: str) -> Path:
        """``stdout`` or ``stderr`` by name."""
        return self.stdout if stream == "stdout" else self.stderr

    def resolve(self, world_path: str) -> Path:
        """Host path of an input world path ``/artifacts/inputs/<cid>/<file>``."""
        prefix = CONTAINER_INPUTS_DIR + "/"
        if not world_path.startswith(prefix):
            raise ValueError(f"not an input world path: {world_path}")
        rel = world_path[len(prefix):]
        if any(p in ("", ".", "..") for p in rel.split("/")):
            raise ValueError(f"invalid input world path: {world_path}")
        return self.inputs / rel


@dataclass(frozen=True)
class ExecRequest:
    """Everything an adapter needs for one execution."""

    spec: ProcessorSpec
    action: Mapping[str, Any]           # the canonical action (what the memo key hashes)
    inputs: Mapping[str, Any]           # rewritten inputs (also written to workspace.inputs_json)
    workspace: Workspace
    execution_id: str
    write_prefix: str                   # expanded, e.g. "/artifacts/outputs/"
    seed: int
    secrets: Mapping[str, str]          # name -> value; never logged or stored
    options: Mapping[str, Any]          # --adapter-opts-json; never in the memo key
    stream: Callable[[str, bytes], None] | None = None   # ("stdout"|"stderr", chunk) live
    image: str | None = None            # resolved image tag/id for container adapters
    workers: Workers | None = None      # a batch's persistent workers (local only; see Workers)
    context: ContextManifest | None = None   # the image context manifest the action's key hashed

    def env(self) -> dict[str, str]:
        """The contract environment (without secrets)."""
        env = dict(self.spec.env)
        env.update({
            "THEORYX_INPUTS": CONTAINER_INPUTS_JSON,
            "THEORYX_WRITE_PREFIX": self.write_prefix,
            "THEORYX_RESULT": CONTAINER_RESULT,
            "THEORYX_SEED": str(self.seed),
            "THEORYX_EXECUTION_ID": self.execution_id,
            "THEORYX_REF": str(self.spec.ref),
            "THEORYX_STREAM": "1" if self.stream is not None else "0",
        })
        return env


@dataclass(frozen=True)
class Outcome:
    """What happened. ``exit_code`` 0 with neither flag set is success. Logs are in the
    workspace's ``stdout.log``/``stderr.log`` (scrubbed and bounded by a
    :class:`~theoryx.adapters.logs.LogCapture`); ``log_dropped`` says how many bytes of each
    stream the bound dropped (only streams that lost some). Outputs are in ``workspace.outputs``.
    ``result`` is for an :attr:`~Adapter.in_process` adapter that hands the processor's result back
    as a value: the bytes its ``THEORYX_RESULT`` file would hold, read under the same rules; None
    (every container adapter) means the executor reads the workspace's result file."""

    exit_code: int
    timed_out: bool = False
    oom_killed: bool = False
    duration_ms: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)   # e.g. image id, container platform
    log_dropped: Mapping[str, int] = field(default_factory=dict)
    result: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed


STREAMS = ("stdout", "stderr")


class Captures:
    """The two :class:`~theoryx.adapters.logs.LogCapture` of one execution (stdout, stderr) in
    the request's workspace, bounded by the spec's ``limits.log_bytes``, secret values scrubbed,
    and forwarded (scrubbed) to ``request.stream`` when the user streams."""

    def __init__(self, request: ExecRequest, *, create_empty: bool = True, forward: bool = True) -> None:
        limit = request.spec.limits.log_bytes
        secrets = list(request.secrets.values())
        self.streams: dict[str, LogCapture] = {}
        try:
            for name in STREAMS:
                self.streams[name] = LogCapture(request.workspace.log(name), limit, secrets, stream=name,
                                                forward=_forwarder(request, name) if forward else None,
                                                create_empty=create_empty)
        except BaseException:
            for capture in self.streams.values():
                capture.close_quietly()
            raise

    def write(self, stream: str, data: bytes) -> None:
        self.streams[stream].write(data)

    def skip(self, stream: str, count: int) -> None:
        """``count`` bytes of ``stream`` were dropped upstream (see :meth:`LogCapture.skip`)."""
        self.streams[stream].skip(count)

    def close(self) -> dict[str, int]:
        """Close both; the bytes each dropped (streams that dropped none are left out)."""
        dropped = {}
        try:
            for name, capture in self.streams.items():
                seen = capture.close()
                if seen.dropped:
                    dropped[name] = seen.dropped
        finally:                       # the other capture's descriptors even if one failed
            for capture in self.streams.values():
                capture.close_quietly()
        return dropped


def _forwarder(request: ExecRequest, stream: str) -> Callable[[bytes], None] | None:
    sink = request.stream
    if sink is None:
        return None

    def forward(data: bytes) -> None:
        sink(stream, data)

    return forward


class Workers(Protocol):
    """Persistent workers for one batch (``Session.map``), created by
    :func:`theoryx.adapters.workers` and closed when the batch ends or is interrupted. An adapter
    that recognises its own kind in ``ExecRequest.workers`` may serve a request from a long-lived
    processor (for specs that declare ``worker``) instead of starting one per run; any other adapter
    ignores it. The result keys and is recorded exactly as a one-shot run's.

    ``in_flight``: how many items the batch may keep in flight. The adapter bounds its containers
    itself (``jobs`` of them), so the batch can prepare, ingest and record other items while the
    containers work."""

    in_flight: int

    def close(self) -> None:
        """Stop and remove every worker; requests still running fail. Idempotent."""
        ...


class Adapter(Protocol):
    """An execution backend. ``env_class`` enters the memo key: results of different classes
    never answer each other (``mock`` vs ``container``). ``bills_compute``: the run is charged for
    its compute time, reserved as (timeout + ``billing_margin_s``) x the rates, at Modal's Sandbox
    rates when ``compute_rates`` is ``"sandbox"``. ``in_process``: the processor runs inside
    theoryx and takes its inputs as a value, so the executor lays out only the workspace's root,
    ``outputs/`` and attachments. :class:`AdapterBase` gives the defaults."""

    name: str
    env_class: str
    bills_compute: bool
    compute_rates: str
    billing_margin_s: int
    in_process: bool

    def execute(self, request: ExecRequest) -> Outcome:
        """Run the processor; raise theoryx errors only for infrastructure failures."""
        ...


class AdapterBase:
    """The defaults of :class:`Adapter`'s declarations for an adapter class to inherit: not
    billed for compute, no margin, not in-process."""

    bills_compute = False
    compute_rates = ""
    billing_margin_s = 0
    in_process = False


# -- options -----------------------------------------------------------------------------------

MAX_TIMEOUT_S = 7 * 24 * 3600
"""The longest wall-clock timeout an adapter option may ask for (a week): beyond it the engines'
clocks overflow (``{"timeout": 1e30}`` ended in ``OverflowError``), and no run is meant to wait
that long."""


@dataclass(frozen=True)
class Option:
    """One adapter option, declared: its kind, its range and (for a sandbox switch) the spec
    field it could open.

    - ``kind``: ``"number"`` (int or float, finite), ``"integer"`` (an int; a float with an
      integral value such as ``3.0`` is accepted, JSON does not tell them apart) or
      ``"choice"`` (one of ``choices``). Booleans are never numbers.
    - ``minimum``/``maximum``: the inclusive range; ``positive`` also excludes 0.
    - ``sandbox``: the dotted spec field (a boolean, e.g. ``runtime.network``) that this option
      relaxes; while that field is false only the values in ``closed`` are accepted, since a
      result computed with the sandbox open would answer later runs whose key says it was
      closed (adapter options never enter the memo key).
    """

    name: str
    kind: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    choices: tuple[str, ...] = ()
    sandbox: str | None = None
    closed: tuple[str, ...] = ()

    def parse(self, adapter: str, value: Any) -> Any:
        """The validated value (a float for numbers, an int for integers); else
        :class:`AdapterOptionsError` naming the option, what was given and what is allowed."""
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise self._bad(adapter, value, f"one of {', '.join(self.choices)}")
            return value
        number = _number(value, integer=self.kind == "integer")
        if number is None:
            raise self._bad(adapter, value, self._range())
        low_ok = self.minimum is None or number >= self.minimum
        high_ok = self.maximum is None or number <= self.maximum
        if not (low_ok and high_ok and (number > 0 or not self.positive)):
            raise self._bad(adapter, value, self._range())
        return number

    def _range(self) -> str:
        what = "an integer" if self.kind == "integer" else "a number"
        parts = []
        if self.positive:
            parts.append("> 0")
        elif self.minimum is not None:
            parts.append(f">= {_show(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"<= {_show(self.maximum)}")
        return what + (f" {' and '.join(parts)}" if parts else "")

    def _bad(self, adapter: str, value: Any, expected: str) -> AdapterOptionsError:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return AdapterOptionsError(
            f"{adapter} adapter option {self.name!r} must be {expected} ({self.help}); got {shown}")


def _number(value: Any, *, integer: bool) -> float | int | None:
    """``value`` as a finite number (an int when ``integer``), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                return None
            return int(value)
        return value
    return float(value)


def _show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class OptionSchema:
    """The options an adapter accepts. :meth:`parse` checks a whole ``adapter_options`` mapping
    up front, cheaply (no engine, no client library), so the pipeline can refuse bad options
    before it writes anything."""

    adapter: str
    options: tuple[Option, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(o.name for o in self.options))

    def parse(self, raw: Any, spec: ProcessorSpec | None = None) -> dict[str, Any]:
        """The validated options that were given (absent ones are left to the adapter's
        defaults). :class:`AdapterOptionsError` for anything but a JSON object, for unknown
        keys (all of them, with the allowed list: a typo is not a no-op), for a wrong type or
        range, and — given ``spec`` — for a value that opens a sandbox switch the spec keeps
        closed (naming the spec field)."""
        if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
            raise AdapterOptionsError(f"{self.adapter} adapter options must be a JSON object, "
                                      f"got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(self.names))
        if unknown:
            allowed = ", ".join(self.names) or "none"
            raise AdapterOptionsError(f"unknown {self.adapter} adapter option(s): {', '.join(unknown)} "
                                      f"(allowed: {allowed})")
        by_name = {o.name: o for o in self.options}
        values = {name: by_name[name].parse(self.adapter, value) for name, value in raw.items()}
        if spec is not None:
            for name, value in values.items():
                _check_sandbox(self.adapter, by_name[name], value, spec)
        return values


def _check_sandbox(adapter: str, option: Option, value: Any, spec: ProcessorSpec) -> None:
    if option.sandbox is None or value in option.closed:
        return
    obj: Any = spec
    for part in option.sandbox.split("."):
        obj = getattr(obj, part)
    if obj is True:
        return
    raise AdapterOptionsError(
        f"{adapter} adapter option {option.name}={value!r} would relax the sandbox of {spec.ref}, whose spec "
        f"sets {option.sandbox}: {str(obj).lower()}; adapter options are not part of the memo key, so a "
        f"result computed that way would answer runs without it. Leave the option out (or use "
        f"{' / '.join(repr(c) for c in option.closed)}), or set {option.sandbox} in the spec")


def timeout_value(spec: ProcessorSpec, options: Mapping[str, Any]) -> float:
    """The wall-clock timeout in seconds: the validated ``timeout`` option, else the spec's
    ``runtime.timeout``."""
    return float(options.get("timeout", spec.runtime.timeout))


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a container or Sandbox is being removed, then raise
    KeyboardInterrupt if one came: removal is never cut short, the interrupt is never lost. Only
    the main thread handles signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        raise KeyboardInterrupt


class Cancellation:
    """What stops a batch's executions when the batch is cancelled (Ctrl-C on ``theoryx map``).

    An adapter that starts something stoppable (a container) registers a ``stop`` callback for it
    under :data:`CANCELLATION`'s current value and unregisters it when it is over. :meth:`cancel`
    calls every registered callback once, each on a thread of its own (it may be called from a signal
    handler, and stopping a container takes up to its grace period); anything registered after
    that is stopped at once. Callbacks must be safe to call when what they stop has already
    ended, and never raise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stops: dict[str, Callable[[], None]] = {}
        self._cancelled = False
        self._draining = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def draining(self) -> bool:
        """Nothing new may start (``--fail-fast`` after a failure); what runs finishes."""
        return self._draining

    def drain(self) -> None:
        """Let what runs finish and start nothing more: an item still waiting for a container or
        a worker ends with :class:`ExecutionCancelled` (:func:`check_cancelled`)."""
        self._draining = True

    def register(self, key: str, stop: Callable[[], None]) -> None:
        with self._lock:
            if not self._cancelled:
                self._stops[key] = stop
                return
        stop()

    def unregister(self, key: str) -> None:
        with self._lock:
            self._stops.pop(key, None)

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            stops, self._stops = list(self._stops.values()), {}
        for stop in stops:       # at once: each may wait out its container's grace period
            threading.Thread(target=stop, name="theoryx-cancel", daemon=True).start()


CANCELLATION: contextvars.ContextVar[Cancellation | None] = contextvars.ContextVar("theoryx_cancellation",
                                                                                  default=None)
"""The cancellation of the batch whose item this thread is executing (None outside batches):
set by :class:`theoryx.pipeline.batch.Batch` around each miss it hands to its pool."""


def check_cancelled(what: str) -> None:
    """Raise :class:`ExecutionCancelled` if the batch whose item this thread executes was
    cancelled, or drains (:meth:`Cancellation.drain`): an adapter calls it before it starts
    ``what`` (a container, a Sandbox, a request to a worker)."""
    cancellation = CANCELLATION.get()
    if cancellation is not None and cancellation.cancelled:
        raise ExecutionCancelled(f"the batch was cancelled before {what} started")
    if cancellation is not None and cancellation.draining:
        raise ExecutionCancelled(f"the batch stopped at its first failure (fail-fast) before {what} started")


@contextlib.contextmanager
def stoppable(key: str, stop: Callable[[], None]) -> Iterator[threading.Event]:
    """While the block runs, ``stop`` (safe to call on something already ended, never raising)
    is what the batch's cancellation calls to stop ``key``; yields an event that is set once it
    did, so the adapter can report :class:`ExecutionCancelled` instead of the failure the stop
    caused. Outside a batch nothing is registered and the event is never set; in a batch already
    cancelled, ``stop`` is called at once."""
    cancellation = CANCELLATION.get()
    stopped = threading.Event()

    def fire() -> None:
        stopped.set()
        stop()

    if cancellation is not None:
        cancellation.register(key, fire)
    try:
        yield stopped
    finally:
        if cancellation is not None:
            cancellation.unregister(key)


def billed(exc: BaseException, outcome: Outcome) -> None:
    """Attach to ``exc`` (an adapter's failure after something billable ran, e.g. a Modal Sandbox
    that existed for some seconds) the ``outcome`` a failed run is settled on: the pipeline
    charges what it says (:func:`billed_outcome`) instead of nothing."""
    exc.theoryx_outcome = outcome  # type: ignore[attr-defined]


def billed_outcome(exc: BaseException) -> Outcome | None:
    """The outcome :func:`billed` attached to ``exc``, if any."""
    found = getattr(exc, "theoryx_outcome", None)
    return found if isinstance(found, Outcome) else None
