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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from theoryx.errors import UsageError
from theoryx.spec.model import ProcessorSpec

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
    workspace's ``stdout.log``/``stderr.log``; outputs in ``workspace.outputs``."""

    exit_code: int
    timed_out: bool = False
    oom_killed: bool = False
    duration_ms: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)   # e.g. image id, container platform

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed


class Adapter(Protocol):
    """An execution backend. ``env_class`` enters the memo key: results of different classes
    never answer each other (``mock`` vs ``container``)."""

    name: str
    env_class: str
    bills_compute: bool

    def execute(self, request: ExecRequest) -> Outcome:
        """Run the processor; raise theoryx errors only for infrastructure failures."""
        ...


def check_options(adapter: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    """:class:`UsageError` naming unknown adapter options (they are a user's typo, not a no-op)."""
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UsageError(f"unknown {adapter} adapter option(s): {', '.join(unknown)} "
                         f"(allowed: {', '.join(sorted(allowed))})")


def timeout_option(adapter: str, spec: ProcessorSpec, raw: Mapping[str, Any]) -> float:
    """The ``timeout`` option (seconds), defaulting to ``runtime.timeout``."""
    timeout = raw.get("timeout", spec.runtime.timeout)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0:
        raise UsageError(f"{adapter} adapter option 'timeout' must be a positive number of seconds")
    return float(timeout)
