"""Run a processor's ``run.py`` as a host subprocess under the processor contract.

A stand-in for a container adapter, for tests of processors themselves: the workspace is a temp
directory, ``THEORYX_WRITE_PREFIX`` an absolute host path (the contract allows any absolute
path), ``THEORYX_INPUTS``/``THEORYX_RESULT`` files in it, and attachments are placed under
``<root>/inputs/<cid>/<file>`` and referenced by that *host* path in ``$artifact`` (inside a
container it would be ``/artifacts/inputs/<cid>/<file>``). The cid is ``b3:`` + SHA-256: a
placeholder with the right shape (processors never recompute it).

The child gets a minimal environment (no proxies, no HOME, no developer settings)::

    host = HostContract(tmp_path, REGISTRY / "data/textstats/run.py")
    file = host.attach("a.csv", b"x,y\\n1,2\\n", mime="text/csv")
    run = host.run({"file": file})
    assert run.exit_code == 0 and run.json("stats.json")["csv"]["rows"] == 1

``start`` returns at once (several processors can run concurrently); stdout is drained as it
arrives, with timestamps, so tests can check that a stream was live.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

BASE_ENV = {
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",       # as in the images; keeps __pycache__ out of registry/
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


@dataclass(frozen=True)
class ContractRun:
    """A finished run: exit code, logs, the files left under the write prefix, the result."""

    exit_code: int
    stdout: bytes
    stderr: str
    outputs: dict[str, bytes]            # path relative to the write prefix -> bytes
    result: dict[str, Any] | None
    stdout_times: tuple[float, ...]      # monotonic arrival time of each stdout read
    ended: float                         # monotonic time the process exited

    def json(self, path: str) -> Any:
        """An output parsed as JSON."""
        return json.loads(self.outputs[path])

    def text(self, path: str) -> str:
        """An output decoded as UTF-8."""
        return self.outputs[path].decode("utf-8")


class RunningProcessor:
    """A started run; :meth:`wait` collects it as a :class:`ContractRun`."""

    def __init__(self, proc: subprocess.Popen[bytes], write_prefix: Path, result: Path) -> None:
        self.proc = proc
        self.write_prefix = write_prefix
        self.result = result
        self._stdout: list[tuple[float, bytes]] = []
        self._stderr: list[bytes] = []
        assert proc.stdout is not None and proc.stderr is not None
        self._threads = [
            threading.Thread(target=_drain, args=(proc.stdout, self._stdout, True), daemon=True),
            threading.Thread(target=_drain, args=(proc.stderr, self._stderr, False), daemon=True),
        ]
        for t in self._threads:
            t.start()
        self._done: ContractRun | None = None

    def stdout_so_far(self) -> bytes:
        """What the process has written to stdout up to now."""
        return b"".join(chunk for _, chunk in list(self._stdout))

    def wait(self, timeout: float = 60) -> ContractRun:
        """Wait for exit (kill after ``timeout`` seconds) and collect everything."""
        if self._done is not None:
            return self._done
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        ended = time.monotonic()
        for t in self._threads:
            t.join(timeout=10)
        outputs = {p.relative_to(self.write_prefix).as_posix(): p.read_bytes()
                   for p in sorted(self.write_prefix.rglob("*")) if p.is_file()}
        result = json.loads(self.result.read_text()) if self.result.exists() else None
        self._done = ContractRun(
            exit_code=self.proc.returncode, stdout=b"".join(c for _, c in self._stdout),
            stderr=b"".join(self._stderr).decode("utf-8", "replace"), outputs=outputs,
            result=result, stdout_times=tuple(t for t, _ in self._stdout), ended=ended)
        return self._done

    def kill(self) -> None:
        """Stop the process if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class HostContract:
    """One workspace under ``root`` for runs of the processor script ``script``."""

    def __init__(self, root: Path, script: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.script = script
        self.env = {**BASE_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
        self.inputs_dir = root / "inputs"
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        self._runs = 0

    def attach(self, name: str, data: bytes, mime: str | None = None) -> dict[str, Any]:
        """Place an attachment and return its rewritten ``$artifact`` object (host path)."""
        cid = "b3:" + hashlib.sha256(data).hexdigest()
        path = self.inputs_dir / cid.replace(":", "_") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        artifact: dict[str, Any] = {"$artifact": str(path), "cid": cid, "size": len(data)}
        if mime is not None:
            artifact["mime"] = mime
        return artifact

    def start(self, inputs: Mapping[str, Any], *, stream: bool = False, seed: int = 0,
              env: Mapping[str, str] | None = None) -> RunningProcessor:
        """Start one run with ``inputs`` in a fresh run directory; returns immediately."""
        self._runs += 1
        run_dir = self.root / f"run-{self._runs}"
        write_prefix, result = run_dir / "outputs", run_dir / "result" / "result.json"
        write_prefix.mkdir(parents=True)
        result.parent.mkdir()
        inputs_json = run_dir / "inputs.json"
        inputs_json.write_text(json.dumps(inputs))
        child_env = {
            **self.env,
            "THEORYX_INPUTS": str(inputs_json),
            "THEORYX_WRITE_PREFIX": str(write_prefix),
            "THEORYX_RESULT": str(result),
            "THEORYX_SEED": str(seed),
            "THEORYX_EXECUTION_ID": f"test-{self._runs}",
            "THEORYX_REF": self.script.parent.name,
            "THEORYX_STREAM": "1" if stream else "0",
            "HOME": str(run_dir / "no-home"),    # does not exist, as in a locked-down container
            **(env or {}),
        }
        proc = subprocess.Popen([sys.executable, str(self.script)], cwd=run_dir, env=child_env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        return RunningProcessor(proc, write_prefix, result)

    def run(self, inputs: Mapping[str, Any], **kwargs: Any) -> ContractRun:
        """:meth:`start` and wait."""
        return self.start(inputs, **kwargs).wait()


def _drain(pipe: IO[bytes], into: list[Any], stamped: bool) -> None:
    fd = pipe.fileno()
    while chunk := os.read(fd, 65536):
        into.append((time.monotonic(), chunk) if stamped else chunk)
    pipe.close()


def load_script(path: Path, name: str) -> ModuleType:
    """Import a processor file by path, as the executor loads ``mock.py`` (registered in
    ``sys.modules`` under ``name`` so that dataclasses in it work)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # no __pycache__ in registry/: a processor folder is a build context that gets hashed
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module
