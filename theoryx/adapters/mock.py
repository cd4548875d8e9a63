"""The ``mock`` adapter: a real adapter around a function, no setup needed.

If the processor's folder holds a stdlib-only ``mock.py`` with
``run(inputs, outdir, ctx) -> dict | None``, it is called in-process (the returned dict is the
processor's result: ``usage``, ``cost_usd``, ``meta``); otherwise deterministic placeholder
outputs are written for every declared output. Adapter options: ``cost_usd`` (simulate a cost,
so budgets can be exercised offline) and ``exit_code`` (simulate a failing processor).
"""

from __future__ import annotations

import importlib.util
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theoryx.adapters.base import ExecRequest, Outcome, Workspace
from theoryx.errors import AdapterError


@dataclass(frozen=True)
class MockContext:
    """What a ``mock.py`` sees besides its inputs and output directory."""

    seed: int
    execution_id: str
    ref: str
    workspace: Workspace
    request: ExecRequest

    def stream(self, text: str) -> None:
        """Write ``text`` to the run's stdout (and live to the user with ``--stream``)."""
        data = text.encode()
        with open(self.workspace.stdout, "ab") as f:
            f.write(data)
        if self.request.stream is not None:
            self.request.stream("stdout", data)

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
        opts = dict(request.options)
        t0 = time.monotonic()
        exit_code = int(opts.get("exit_code", 0))
        result: dict[str, Any] = {}
        mock_py = request.spec.folder / "mock.py"
        try:
            if mock_py.is_file():
                ctx = MockContext(request.seed, request.execution_id, str(request.spec.ref), ws, request)
                result = _load(mock_py).run(dict(request.inputs), ws.outputs, ctx) or {}
            else:
                result = _placeholders(request)
        except Exception:
            exit_code = exit_code or 1
            with open(ws.stderr, "ab") as f:
                f.write(traceback.format_exc().encode())
        if exit_code:
            with open(ws.stderr, "ab") as f:
                f.write(f"mock processor exited with code {exit_code}\n".encode())
        if "cost_usd" in opts:
            result["cost_usd"] = float(opts["cost_usd"])
        if result:
            ws.result.write_text(json.dumps(result, sort_keys=True))
        return Outcome(exit_code, duration_ms=int((time.monotonic() - t0) * 1000))


def create(**_: Any) -> MockAdapter:
    return MockAdapter()
