"""An offline fake of :mod:`theoryx.adapters.modal.boundary` and a registry of test processors.

:class:`FakeModal` does what Modal does with a :class:`~theoryx.adapters.modal.boundary.Call`, on the
host: it pickles the payload (Modal serialises a function's argument the same way), starts a
"container" (a subprocess running the real :mod:`theoryx.adapters.modal.runner` through
``runner_host.py``, with a temporary directory standing in for ``/``) whose environment is a
small image environment plus the call's secrets (what ``modal.Secret.from_dict`` does), and
returns the runner's response. Modal's own failures are simulated by raising real
``modal.exception`` instances through the real :func:`theoryx.adapters.modal.boundary.translate`.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theoryx.adapters.modal.boundary import Call, translate

HERE = Path(__file__).resolve().parent
IMAGE_ENV = {"LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "MODAL_TASK_ID": "ta-fake"}


@dataclass
class FakeModal:
    """Runs calls on the host. ``function_timeout_s`` replaces the call's Modal timeout (to
    let "Modal" kill a function); ``error`` is a Modal exception every call raises."""

    tmp: Path
    function_timeout_s: float | None = None
    error: BaseException | None = None
    calls: list[Call] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    credential_checks: int = 0

    def require_credentials(self) -> None:
        self.credential_checks += 1

    def call(self, call: Call) -> dict[str, Any]:
        *_, (_, response) = self._events(call, "call")
        return dict(response)

    def _events(self, call: Call, mode: str) -> Iterator[tuple[str, Any]]:
        self.calls.append(call)
        if self.error is not None:
            mapped = translate(self.error, f"running {call.app_name} on Modal")
            if isinstance(mapped, dict):
                yield "done", mapped
                return
            raise mapped from self.error
        data = pickle.dumps(dict(call.payload))
        self.payloads.append(data)
        root = self.tmp / f"container-{len(self.calls)}"
        root.mkdir(parents=True)
        env = {"PATH": os.environ["PATH"], **IMAGE_ENV, **call.secrets}
        proc = subprocess.Popen([sys.executable, str(HERE / "runner_host.py"), str(root), mode],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(data)
        proc.stdin.close()
        deadline = time.monotonic() + (self.function_timeout_s or call.timeout_s)
        try:
            yield from self._read(proc, deadline, call)
        finally:
            proc.kill()
            proc.wait()
            remove_tree(root)

    def _read(self, proc: subprocess.Popen[bytes], deadline: float, call: Call) -> Iterator[tuple[str, Any]]:
        import modal.exception

        assert proc.stdout is not None
        while True:
            header = _read_exact(proc.stdout, 8, deadline)
            if header is None:
                proc.kill()
                exc = modal.exception.FunctionTimeoutError(f"Function {call.app_name} timed out")
                mapped = translate(exc, f"running {call.app_name} on Modal")
                assert isinstance(mapped, dict)
                yield "done", mapped
                return
            body = _read_exact(proc.stdout, struct.unpack(">Q", header)[0], deadline)
            assert body is not None, "the runner stopped mid-event"
            name, value = pickle.loads(body)
            if name == "done":
                self.responses.append(value)
            yield name, value
            if name == "done":
                return


class StreamingFakeModal(FakeModal):
    """A fake that also offers ``call_stream`` (the runner as a generator function)."""

    def call_stream(self, call: Call) -> Iterator[tuple[str, Any]]:
        yield from self._events(call, "stream")


def _read_exact(pipe: Any, n: int, deadline: float) -> bytes | None:
    """``n`` bytes from ``pipe``, or None when ``deadline`` passes first."""
    import select

    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([pipe], [], [], left)[0]:
            return None
        chunk = os.read(pipe.fileno(), n - len(buf))
        if not chunk:
            raise AssertionError("the runner exited without a response")
        buf += chunk
    return buf


def remove_tree(path: Path) -> None:
    """Remove a fake container's root, including the read-only input directories."""
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            full = Path(dirpath) / d
            if not full.is_symlink():
                full.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


# -- a registry of test processors -------------------------------------------------------------

PROBE = r'''
import hashlib, json, os, sys, time

inputs = json.load(open(os.environ["THEORYX_INPUTS"]))
mode = inputs.get("mode", "hello")
out = os.environ["THEORYX_WRITE_PREFIX"]

def write(rel, data):
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)

if mode == "hello":
    art = inputs.get("file", {}).get("$artifact")
    env = {k: v for k, v in os.environ.items() if k.startswith(("THEORYX_", "MODAL_")) or k == "HOME"}
    write("out.json", json.dumps({"env": env, "cwd": os.getcwd(),
                                  "file_text": open(art).read() if art else None,
                                  "file_writable": os.access(art, os.W_OK) if art else None,
                                  "inputs": inputs}))
    write("sub/note.txt", "nested\n")
    with open(os.environ["THEORYX_RESULT"], "w") as f:
        json.dump({"usage": {"units": 3}, "cost_usd": 0.25}, f)
    print("hello on stdout")
    print("hello on stderr", file=sys.stderr)
elif mode == "fail":
    print("something broke", file=sys.stderr)
    sys.exit(3)
elif mode == "sleep":
    print("going to sleep", flush=True)
    time.sleep(60)
elif mode == "secret":
    value = os.environ.get("PROBE_SECRET", "")
    write("out.json", json.dumps({"sha": hashlib.sha256(value.encode()).hexdigest()}))
    print("the secret is " + value, flush=True)
elif mode == "stream":
    for i in range(3):
        print("tick %d" % i, flush=True)
        time.sleep(0.4)
elif mode == "symlink":
    os.symlink("/etc/hostname", os.path.join(out, "link"))
elif mode == "hardlink":
    write("a.txt", "a")
    os.link(os.path.join(out, "a.txt"), os.path.join(out, "b.txt"))
elif mode == "big":
    write("big.bin", "x" * 5000)
elif mode == "exec":
    write("tool.sh", "#!/bin/sh\n")
    os.chmod(os.path.join(out, "tool.sh"), 0o755)
'''

DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
WORKDIR /app
COPY vendor/ /opt/theoryx/vendor/
COPY run.py /app/run.py
CMD ["python3", "/app/run.py"]
"""

SPEC = """\
ref: test/{name}@1
image:
  dockerfile: probe/Dockerfile
command: {command}
runtime: {{cpu: 0.5, memory: 256, timeout: 60, gpu: {gpu}}}
adapter:
  modal:
    stub_name: theoryx-test-{name}
{extra}inputs:
  type: object
outputs:
  - {{path: out.json, mime: application/json, optional: true}}
"""


def make_registry(root: Path) -> Path:
    """``test/probe@1`` (plain), ``test/secret@1`` (secret PROBE_SECRET), ``test/tiny@1``
    (outputs capped at 4 KB) and ``test/gpu@1`` (two GPUs of any type); the probe's behaviour
    is chosen by ``inputs["mode"]``."""
    folder = root / "processors" / "test" / "probe"
    folder.mkdir(parents=True)
    (folder / "run.py").write_text(PROBE)
    (folder / "Dockerfile").write_text(DOCKERFILE)
    command = f'["{sys.executable}", "{folder / "run.py"}"]'
    specs = {
        "probe": (command, "null", ""),
        "secret": (command, "null", "secrets: [PROBE_SECRET]\n"),
        "tiny": (command, "null", "limits: {max_bytes: 4096}\n"),
        "gpu": (command, "2", ""),
    }
    for name, (cmd, gpu, extra) in specs.items():
        text = SPEC.format(name=name, command=cmd, gpu=gpu, extra=extra)
        (root / "processors" / "test" / f"{name}@1.yaml").write_text(text)
    return root
