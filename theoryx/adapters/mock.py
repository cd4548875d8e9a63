"""The ``mock`` adapter: a real adapter around a function, no setup needed.

If the processor's folder holds a stdlib-only ``mock.py`` with
``run(inputs, outdir, ctx) -> dict | None``, it is called in-process (the returned dict is the
processor's result: ``usage``, ``cost_usd``, ``meta``); otherwise deterministic placeholder
outputs are written for every declared output. Adapter options (:data:`OPTIONS`): ``cost_usd``
(simulate a cost, so budgets can be exercised offline: a finite number of dollars from 0 to
:data:`MAX_COST_USD`), ``exit_code`` (simulate a failing processor: an integer 0-255) and
``timeout`` (seconds, as for the container adapters: budget estimates use it; in-process code
cannot be interrupted, so a ``mock.py`` that overran it is reported as timed out afterwards).

What ``ctx.stream`` writes and the traceback of a failing ``mock.py`` go through the run's log
captures (:class:`~theoryx.adapters.base.Captures`): scrubbed, bounded by ``limits.log_bytes``.
"""

from __future__ import annotations

import importlib.util
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theoryx.adapters.base import (
    MAX_TIMEOUT_S,
    Captures,
    ExecRequest,
    Option,
    OptionSchema,
    Outcome,
    Workspace,
    timeout_value,
)
from theoryx.errors import AdapterError

MAX_COST_USD = 1_000_000
"""The largest simulated cost: far above any test's plan, far below what money arithmetic caps."""

OPTIONS = OptionSchema("mock", (
    Option("cost_usd", "number", "a simulated cost in dollars", minimum=0, maximum=MAX_COST_USD),
    Option("exit_code", "integer", "a simulated exit code", minimum=0, maximum=255),
    Option("timeout", "number", "the wall-clock timeout in seconds", positive=True, maximum=MAX_TIMEOUT_S),
))


@dataclass(frozen=True)
class MockContext:
    """What a ``mock.py`` sees besides its inputs and output directory."""

    seed: int
    execution_id: str
    ref: str
    workspace: Workspace
    request: ExecRequest
    captures: Captures

    def stream(self, text: str | bytes) -> None:
        """Write ``text`` to the run's stdout (and live to the user with ``--stream``)."""
        self.captures.write("stdout", text if isinstance(text, bytes) else text.encode())

    def resolve(self, world_path: str) -> Path:
        """Host path of an input world path ``/artifacts/inputs/<cid>/<file>``."""
        return self.workspace.resolve(world_path)


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


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"theoryx_mock_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise AdapterError(f"cannot load mock processor {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class MockAdapter:
    """Runs ``mock.py`` (or writes placeholders) in-process."""

    name = "mock"
    env_class = "mock"
    bills_compute = False

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
                    ctx = MockContext(request.seed, request.execution_id, str(request.spec.ref), ws, request,
                                      captures)
                    result = _load(mock_py).run(dict(request.inputs), ws.outputs, ctx) or {}
                else:
                    result = _placeholders(request)
            except Exception:
                exit_code = exit_code or 1
                captures.write("stderr", traceback.format_exc().encode())
            if exit_code:
                captures.write("stderr", f"mock processor exited with code {exit_code}\n".encode())
        finally:
            dropped = captures.close()
        if "cost_usd" in opts:
            result["cost_usd"] = float(opts["cost_usd"])
        if result:
            ws.result.write_text(json.dumps(result, sort_keys=True))
        elapsed = time.monotonic() - t0
        timed_out = "timeout" in opts and elapsed > timeout_value(request.spec, opts)
        return Outcome(exit_code, timed_out, duration_ms=int(elapsed * 1000), log_dropped=dropped,
                       meta={"timeout_s": opts["timeout"]} if "timeout" in opts else {})


def create(**_: Any) -> MockAdapter:
    return MockAdapter()
