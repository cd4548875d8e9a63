"""The ``mock`` adapter: a real adapter around a function, no setup needed.

If the processor's folder holds a stdlib-only ``mock.py`` with
``run(inputs, outdir, ctx) -> dict | None``, it is called in-process (the returned dict is the
processor's result: ``usage``, ``cost_usd``, ``meta``; anything else, or a dict with no JSON form,
fails the processor); otherwise deterministic placeholder
outputs are written for every declared output. Adapter options (:data:`OPTIONS`): ``cost_usd``
(simulate a cost, so budgets can be exercised offline: a finite number of dollars from 0 to
:data:`MAX_COST_USD`), ``exit_code`` (simulate a failing processor: an integer 0-255) and
``timeout`` (seconds, as for the container adapters: budget estimates use it; in-process code
cannot be interrupted, so a ``mock.py`` that overran it is reported as timed out afterwards).
A ``mock.py`` that calls ``sys.exit(n)`` exits the processor, not theoryx: exit code ``n`` (0 is
success; anything but an integer 0-255 is 1), as a container's would.

What ``ctx.stream`` writes, what ``mock.py`` prints (``print()``, ``sys.stdout``/``sys.stderr``
writes made on the thread running it) and the traceback of a failing ``mock.py`` go through the
run's log captures (:class:`~theoryx.adapters.base.Captures`): scrubbed, bounded by
``limits.log_bytes`` — never onto theoryx's own output (``run --json`` prints one JSON document).

Running in-process, the mock needs less of the workspace than a container (:attr:`MockAdapter.in_process`):
the executor creates only its root, ``outputs/`` and the attachments under ``inputs/``; the
inputs come as a value and the result goes back with the outcome (:attr:`Outcome.result`: the
bytes the result file would hold; None when ``mock.py`` returned none, and then the executor
reads the workspace's result file). A ``mock.py``
that reaches for ``ctx.workspace`` gets the whole container layout (``inputs/``, ``result/``,
``inputs.json``), laid out on that first use; a result file it writes there is read as a
container's would be. Every run executes ``mock.py`` afresh as a new module (its compiled code is
kept while the file is unchanged), so no state carries over from one run to the next.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theoryx.adapters.base import (
    MAX_TIMEOUT_S,
    AdapterBase,
    Captures,
    ExecRequest,
    Option,
    OptionSchema,
    Outcome,
    Workspace,
    timeout_value,
)

MAX_COST_USD = 1_000_000
"""The largest simulated cost: far above any test's plan, far below what money arithmetic caps."""

OPTIONS = OptionSchema("mock", (
    Option("cost_usd", "number", "a simulated cost in dollars", minimum=0, maximum=MAX_COST_USD),
    Option("exit_code", "integer", "a simulated exit code", minimum=0, maximum=255),
    Option("timeout", "number", "the wall-clock timeout in seconds", positive=True, maximum=MAX_TIMEOUT_S),
))


def lay_out(ws: Workspace, inputs: Mapping[str, Any]) -> None:
    """Complete ``ws`` to the layout a container sees: ``inputs/``, ``result/`` and the rewritten
    inputs in ``inputs.json``. Idempotent."""
    for d in (ws.inputs, ws.result_dir):
        d.mkdir(exist_ok=True)
    if not ws.inputs_json.exists():
        ws.inputs_json.write_text(json.dumps(inputs, sort_keys=True))


@dataclass(frozen=True)
class MockContext:
    """What a ``mock.py`` sees besides its inputs and output directory."""

    seed: int
    execution_id: str
    ref: str
    request: ExecRequest
    captures: Captures

    @property
    def workspace(self) -> Workspace:
        """The run's workspace, completed to a container's layout on first use (see the module
        docstring)."""
        lay_out(self.request.workspace, self.request.inputs)
        return self.request.workspace

    def stream(self, text: str | bytes) -> None:
        """Write ``text`` to the run's stdout (and live to the user with ``--stream``)."""
        self.captures.write("stdout", text if isinstance(text, bytes) else text.encode())

    def resolve(self, world_path: str) -> Path:
        """Host path of an input world path ``/artifacts/inputs/<cid>/<file>`` (the executor
        materialised every attachment the action references)."""
        return self.request.workspace.resolve(world_path)


def _placeholders(req: ExecRequest) -> dict[str, Any]:
    for out in req.spec.outputs:
        path = req.workspace.outputs / out.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if out.mime == "application/json" or out.path.endswith(".json"):
            body = json.dumps({"mock": True, "ref": str(req.spec.ref), "path": out.path}, sort_keys=True)
            path.write_text(body + "\n")
        else:
            path.write_text(f"mock output of {req.spec.ref} for {out.path}\n")
    return {}


_compiled: dict[Path, tuple[tuple[int, int, int], types.CodeType]] = {}
_compiled_lock = threading.Lock()


_ROUTE = threading.local()       # .captures: the run whose mock.py this thread is running
_ROUTING_LOCK = threading.Lock()
_routing = 0                      # runs in progress that route their thread's prints


class _ThreadRouted:
    """Stands in for ``sys.stdout`` or ``sys.stderr`` while ``mock.py`` code runs: a write from a
    thread running a ``mock.py`` goes to that run's capture (as a container's output would);
    every other thread's goes to the stream it stands in for."""

    def __init__(self, real: Any, stream: str) -> None:
        self.real, self.stream = real, stream

    def write(self, text: str) -> int:
        captures = getattr(_ROUTE, "captures", None)
        if captures is None:
            return int(self.real.write(text))
        captures.write(self.stream, text.encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        if getattr(_ROUTE, "captures", None) is None:
            self.real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@contextmanager
def _printed_into(captures: Captures) -> Iterator[None]:
    """Inside the block, what this thread prints goes to ``captures`` (:class:`_ThreadRouted` is
    put in place of ``sys.stdout``/``sys.stderr`` by the first run that needs it and taken away
    by the last, unless something else replaced them meanwhile)."""
    import sys

    global _routing
    with _ROUTING_LOCK:
        if _routing == 0:
            sys.stdout = _ThreadRouted(sys.stdout, "stdout")
            sys.stderr = _ThreadRouted(sys.stderr, "stderr")
        _routing += 1
    _ROUTE.captures = captures
    try:
        yield
    finally:
        _ROUTE.captures = None
        with _ROUTING_LOCK:
            _routing -= 1
            if _routing == 0:
                if isinstance(sys.stdout, _ThreadRouted):
                    sys.stdout = sys.stdout.real
                if isinstance(sys.stderr, _ThreadRouted):
                    sys.stderr = sys.stderr.real


def _load(path: Path) -> Any:
    """Execute ``mock.py`` at ``path`` as a new module (fresh globals every run). Its compiled
    code is reused while the file keeps its inode, size and mtime. Errors (a missing file, a
    syntax error) propagate: the caller reports them as the processor's failure."""
    st = os.stat(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _compiled_lock:
        known = _compiled.get(path)
    if known is None or known[0] != stamp:
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        with _compiled_lock:
            _compiled[path] = (stamp, code)
    else:
        code = known[1]
    module = types.ModuleType(f"theoryx_mock_{abs(hash(path))}")
    module.__file__ = str(path)
    exec(code, module.__dict__)
    return module


class MockAdapter(AdapterBase):
    """Runs ``mock.py`` (or writes placeholders) in-process."""

    name = "mock"
    env_class = "mock"
    in_process = True
    """The executor lays out only what an in-process run uses (see the module docstring)."""

    def execute(self, request: ExecRequest) -> Outcome:
        ws = request.workspace
        opts = OPTIONS.parse(request.options, request.spec)
        t0 = time.monotonic()
        exit_code = int(opts.get("exit_code", 0))
        result: dict[str, Any] = {}
        mock_py = request.spec.folder / "mock.py"
        captures = Captures(request, create_empty=False)
        try:
            try:
                if mock_py.is_file():
                    ctx = MockContext(request.seed, request.execution_id, str(request.spec.ref), request, captures)
                    with _printed_into(captures):
                        returned = _load(mock_py).run(dict(request.inputs), ws.outputs, ctx)
                    result = _returned(returned, mock_py)
                else:
                    result = _placeholders(request)
            except SystemExit as exc:   # sys.exit() in mock.py: the processor's exit, not theoryx's
                code = exc.code
                if code is not None and (type(code) is not int or not 0 <= code <= 255):
                    code = 1
                exit_code = exit_code or code or 0
                if exit_code:
                    captures.write("stderr", traceback.format_exc().encode())
            except Exception:
                exit_code = exit_code or 1
                captures.write("stderr", traceback.format_exc().encode())
            if exit_code:
                captures.write("stderr", f"mock processor exited with code {exit_code}\n".encode())
        finally:
            dropped = captures.close()
        if "cost_usd" in opts:
            result["cost_usd"] = float(opts["cost_usd"])
        elapsed = time.monotonic() - t0
        timed_out = "timeout" in opts and elapsed > timeout_value(request.spec, opts)
        return Outcome(exit_code, timed_out, duration_ms=int(elapsed * 1000), log_dropped=dropped,
                           meta={"timeout_s": opts["timeout"]} if "timeout" in opts else {},
                           result=json.dumps(result, sort_keys=True).encode() if result else None)


def _returned(value: Any, mock_py: Path) -> dict[str, Any]:
    """What ``run`` returned, checked: None or a dict with a JSON form, else :class:`TypeError`
    (raised inside the caller's ``try``: the processor's failure, the reason in its stderr)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{mock_py}: run() returned a {type(value).__name__}; it must return a dict "
                        "({'usage', 'cost_usd', 'meta'}) or None")
    try:
        json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{mock_py}: run() returned a dict that is not JSON: {exc}") from None
    return value


def create(**_: Any) -> MockAdapter:
    return MockAdapter()
