"""The function body that runs inside the Modal container: stdlib only, Python 3.9+.

Modal imports this module in the processor's image and calls :func:`run` (or the generator
:func:`run_stream`, which yields the logs as they come) with one payload built by
:mod:`theoryx.adapters.modal.adapter`. The runner recreates the processor contract (BUILD.md,
"The processor contract") inside the container and runs the processor's command as a subprocess,
as the local adapter's container
would:

- ``/artifacts/inputs/<cid>/<file>``: the attachments (files 0444, directories 0555);
- ``/theoryx/inputs.json``, ``/theoryx/result/``, and the write prefix, an empty directory;
- environment: the container's (the image's ``ENV`` plus the secrets, which Modal injects from
  a ``modal.Secret``: their values are never in the payload), without Modal's own ``MODAL_*``
  variables, plus the payload's ``env`` (the contract variables);
- a wall-clock ``timeout``: the process group is killed and the response says ``timed_out``;
  leftover processes of the group are killed when the command exits (as a container stop would);
  a SIGKILL that the cgroup's ``oom_kill`` counter accounts for says ``oom_killed``; an exit by
  signal N is reported as ``128 + N`` (as Docker does).

The response carries stdout/stderr, ``result.json`` (a regular file only, its first MiB) and the
tree left under the write prefix, walked without following links. The logs are bounded in the
container as on the host (:class:`theoryx.adapters.logs.LogCapture`, shipped with the runner):
secret values (of ``secret_names``, read from the container's environment) scrubbed first,
then the first and last halves of ``log_bytes`` kept in files, never in memory; ``log_cuts``
says where the dropped bytes were, so the host's capture redoes the same cut with its marker.
Streamed logs are sent as they come and never kept. Regular files travel with their
bytes; every other entry (directory, symlink and its target text, FIFO, socket, device) travels
as a description, so that the host-side ingestion judges the same tree the processor left
(and rejects what it rejects). Bytes that ingestion would reject anyway are not sent: set-id
files, files with other hard links, and, once the spec's caps (``limits``) are exceeded, every
file (only sizes are sent; the walk stops there).

``root`` stands in for ``/`` (tests run this module on a host with a temporary root): the
contract paths in the environment and the ``$artifact`` paths in the inputs then point below it.

Payload (format 1)::

    {"format": 1, "command": [...], "cwd": "/" | None, "env": {name: value},
     "secret_names": [...], "inputs_json": "...", "attachments": {world path: bytes},
     "write_prefix": "/artifacts/outputs/", "timeout": seconds,
     "limits": {"max_files": n, "max_bytes": n, "max_depth": n}, "log_bytes": n (optional)}

Response (format 1)::

    {"format": 1, "error": None | "why the runner itself failed", "exit_code": int,
     "timed_out": bool, "oom_killed": bool, "duration_ms": int,
     "stdout": bytes | None, "stderr": bytes | None, "streamed": bool,
     "log_cuts": {"stdout" | "stderr": [head bytes, dropped bytes]} (streams that dropped some),
     "result": bytes | None, "outputs": [entry, ...]}

    entry: {"path": relative path, "kind": "file" | "dir" | "symlink" | "fifo" | "socket" |
            "chr" | "blk", "mode": permission and set-id bits, "size": int, "nlink": int,
            "data": bytes | None, "target": str | None, "rdev": int}
"""

from __future__ import annotations

import errno
import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from theoryx.adapters.logs import LogCapture

FORMAT = 1
INPUTS_DIR = "/artifacts/inputs"
INPUTS_JSON = "/theoryx/inputs.json"
RESULT_DIR = "/theoryx/result"
RESULT = RESULT_DIR + "/result.json"
RESULT_LIMIT = 1 << 20
REBASED_ENV = ("THEORYX_INPUTS", "THEORYX_WRITE_PREFIX", "THEORYX_RESULT")
_CHUNK = 1 << 16
_DRAIN_S = 10.0
_STREAM_QUEUE = 64              # chunks of at most _CHUNK bytes waiting to be sent
DEFAULT_LOG_BYTES = 8 << 20     # theoryx.spec.model's default, for a payload that does not say

Emit = Callable[[str, bytes], None]
Response = dict[str, Any]


def run(payload: dict[str, Any], root: str = "/") -> Response:
    """Run one execution and return the response; never raises (a failure of the runner
    itself, e.g. a malformed payload, is reported under ``error``)."""
    return _guarded(payload, root, None)


def run_stream(payload: dict[str, Any], root: str = "/") -> Iterator[tuple[str, Any]]:
    """Like :func:`run`, as a generator: ``("stdout" | "stderr", bytes)`` chunks as the
    processor writes them, then ``("done", response)`` whose logs are None (already sent)."""
    # bounded: a processor that writes faster than Modal sends waits on its pipe instead of
    # piling its output up in the runner's memory (which the processor's memory limit covers)
    events: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=_STREAM_QUEUE)

    def work() -> None:
        events.put(("done", _guarded(payload, root, lambda name, data: events.put((name, data)))))

    threading.Thread(target=work, name="theoryx-runner", daemon=True).start()
    while True:
        event = events.get()
        yield event
        if event[0] == "done":
            return


def killed_response(*, timed_out: bool = False, oom_killed: bool = False, note: str = "") -> Response:
    """The response for a function that Modal itself killed (its timeout, its memory limit):
    no outputs, the note as stderr."""
    return _response(exit_code=137, timed_out=timed_out, oom_killed=oom_killed,
                     stderr=note.encode("utf-8", "replace"))


def _response(**fields: Any) -> Response:
    out: Response = {
        "format": FORMAT, "error": None, "exit_code": -1, "timed_out": False, "oom_killed": False,
        "duration_ms": 0, "stdout": b"", "stderr": b"", "streamed": False, "log_cuts": {}, "result": None,
        "outputs": [],
    }
    out.update(fields)
    return out


def _guarded(payload: dict[str, Any], root: str, emit: Emit | None) -> Response:
    try:
        return _Run(payload, _Root(root), emit).execute()
    except Exception:
        return _response(error=traceback.format_exc())


class _Root:
    """Maps world paths (``/artifacts/...``, ``/theoryx/...``) below ``root``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def host(self, world: str) -> str:
        if self.root == "/":
            return world
        return os.path.join(self.root, world.lstrip("/"))


def _clean(world: str, under: str, depth: int | None = None) -> str:
    """``world`` when it is a clean absolute path below ``under`` (``depth`` parts below it,
    when given); else ValueError."""
    parts = world[len(under) + 1:].split("/") if world.startswith(under + "/") else [""]
    if (any(p in ("", ".", "..") for p in parts) or "\0" in world
            or (depth is not None and len(parts) != depth)):
        raise ValueError(f"unsafe path in payload: {world!r}")
    return world


class _Pump(threading.Thread):
    """Drains one pipe of the processor: to ``emit`` when streaming (nothing kept), else into a
    bounded :class:`LogCapture` file (``capture``)."""

    def __init__(self, pipe: Any, name: str, emit: Emit | None, capture: LogCapture | None) -> None:
        super().__init__(name=f"theoryx-{name}", daemon=True)
        self.fd = pipe.fileno()
        self.pipe = pipe
        self.stream = name
        self.emit = emit
        self.capture = capture

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, _CHUNK)
            except OSError:
                return
            if not data:
                return
            if self.emit is not None:
                self.emit(self.stream, data)
            elif self.capture is not None:
                self.capture.write(data)

    def collect(self) -> tuple[bytes, list[int] | None]:
        """The kept bytes (head then tail) and, when some were dropped, ``[head, dropped]``."""
        if self.capture is None:
            return b"", None
        seen = self.capture.close()
        with open(self.capture.path, "rb") as f:
            data = f.read()
        return data, ([seen.head, seen.dropped] if seen.dropped else None)


class _Run:
    def __init__(self, payload: dict[str, Any], root: _Root, emit: Emit | None) -> None:
        if payload.get("format") != FORMAT:
            raise ValueError(f"unsupported payload format {payload.get('format')!r} (runner speaks {FORMAT})")
        self.p = payload
        self.root = root
        self.emit = emit
        self.prefix = _clean(str(payload["write_prefix"]).rstrip("/"), "/artifacts") + "/"

    def execute(self) -> Response:
        self.materialise()
        env = self.environment()
        command = [str(c) for c in self.p["command"]]
        if not command:
            raise ValueError("empty command")
        cwd = self.root.host(str(self.p.get("cwd") or "/"))
        os.makedirs(cwd, exist_ok=True)      # as Docker's WORKDIR does
        oom_before = _oom_kills()
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            code = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            note = f"theoryx: cannot execute {command[0]!r}: {exc.strerror}\n".encode()
            if self.emit is not None:
                self.emit("stderr", note)
            return self.respond(code, False, False, 0, {"stdout": (b"", None), "stderr": (note, None)})
        with tempfile.TemporaryDirectory(prefix="theoryx-logs-") as logs_dir:
            pumps = [_Pump(pipe, name, self.emit, self.capture(logs_dir, name))
                     for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
            return self.supervise(proc, pumps, oom_before, t0)

    def capture(self, logs_dir: str, name: str) -> LogCapture | None:
        """A bounded capture of one stream, secret values scrubbed; None when streaming."""
        if self.emit is not None:
            return None
        names = [str(n) for n in self.p.get("secret_names") or ()]
        secrets = [os.environ[n] for n in names if os.environ.get(n)]
        limit = int(self.p.get("log_bytes") or DEFAULT_LOG_BYTES)
        return LogCapture(Path(logs_dir) / f"{name}.log", limit, secrets, stream=name, with_marker=False)

    def supervise(self, proc: subprocess.Popen[bytes], pumps: list[_Pump], oom_before: int | None,
                  t0: float) -> Response:
        """Wait for the processor (killing its group at the timeout), drain its logs, respond."""
        for pump in pumps:
            pump.start()
        timed_out = False
        try:
            proc.wait(timeout=float(self.p["timeout"]))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)
            proc.wait()
        duration_ms = int((time.monotonic() - t0) * 1000)
        for pump in pumps:
            pump.join(_DRAIN_S)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        for pump in pumps:              # a closed pipe ends a pump that was still reading
            pump.join(1.0)
        rc = proc.returncode
        oom_after = _oom_kills()
        oom = (not timed_out and rc == -signal.SIGKILL and oom_before is not None
               and oom_after is not None and oom_after > oom_before)
        exit_code = 128 - rc if rc < 0 else rc
        return self.respond(exit_code, timed_out, oom, duration_ms, {p.stream: p.collect() for p in pumps})

    def respond(self, exit_code: int, timed_out: bool, oom: bool, duration_ms: int,
                logs: dict[str, tuple[bytes, list[int] | None]]) -> Response:
        streamed = self.emit is not None
        cuts = {name: cut for name, (_, cut) in logs.items() if cut is not None}
        return _response(
            exit_code=exit_code, timed_out=timed_out, oom_killed=oom, duration_ms=duration_ms,
            stdout=None if streamed else logs["stdout"][0], stderr=None if streamed else logs["stderr"][0],
            streamed=streamed, log_cuts={} if streamed else cuts,
            result=_read_result(self.root.host(RESULT)),
            outputs=collect(self.root.host(self.prefix), dict(self.p.get("limits") or {})),
        )

    def materialise(self) -> None:
        """Fresh contract directories; attachments read-only; the inputs JSON."""
        for top in ("/artifacts", "/theoryx"):
            _remove_tree(self.root.host(top))
        for d in (INPUTS_DIR, RESULT_DIR, self.prefix):
            os.makedirs(self.root.host(d), exist_ok=True)
        dirs = set()
        for world, data in sorted(dict(self.p.get("attachments") or {}).items()):
            path = self.root.host(_clean(str(world), INPUTS_DIR, depth=2))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            dirs.add(os.path.dirname(path))
            with open(path, "wb") as f:
                f.write(bytes(data))
            os.chmod(path, 0o444)
        for d in sorted(dirs, reverse=True):
            os.chmod(d, 0o555)
        inputs = json.loads(self.p["inputs_json"])
        with open(self.root.host(INPUTS_JSON), "w", encoding="utf-8") as f:
            json.dump(self.rebase_artifacts(inputs), f, sort_keys=True)
        os.chmod(self.root.host(INPUTS_JSON), 0o444)

    def rebase_artifacts(self, value: Any) -> Any:
        """``$artifact`` world paths below the stand-in root (unchanged when root is ``/``)."""
        if self.root.root == "/":
            return value
        if isinstance(value, list):
            return [self.rebase_artifacts(v) for v in value]
        if isinstance(value, dict):
            out = {k: self.rebase_artifacts(v) for k, v in value.items()}
            art = value.get("$artifact")
            if isinstance(art, str) and art.startswith(INPUTS_DIR + "/"):
                out["$artifact"] = self.root.host(art)
            return out
        return value

    def environment(self) -> dict[str, str]:
        names = set(self.p.get("secret_names") or ())
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_") or k in names}
        env.update({str(k): str(v) for k, v in dict(self.p.get("env") or {}).items()})
        for key in REBASED_ENV:
            if key in env:
                env[key] = self.root.host(env[key])
        return env


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _oom_kills() -> int | None:
    """The cgroup's OOM-kill count (v2 ``memory.events``, v1 ``memory.oom_control``), or None."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def _read_result(path: str) -> bytes | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    with open(path, "rb") as f:
        return f.read(RESULT_LIMIT)


def _remove_tree(path: str) -> None:
    if not os.path.lexists(path):
        return

    def onerror(func: Any, p: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
        func(p)

    shutil.rmtree(path, onerror=onerror)


_KINDS = (
    (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"),
)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return next((name for test, name in _KINDS if test(mode)), "fifo")


def collect(top: str, limits: dict[str, int]) -> list[dict[str, Any]]:
    """The entries below ``top`` (see the module docstring), walked without following links."""
    max_files = int(limits.get("max_files", 10_000))
    max_bytes = int(limits.get("max_bytes", 10 << 30))
    max_depth = int(limits.get("max_depth", 32))
    entries: list[dict[str, Any]] = []
    files = total = 0
    stack: list[tuple[str, str, int]] = [(top, "", 1)]
    while stack:
        directory, rel_dir, depth = stack.pop()
        for name in sorted(os.listdir(directory)):
            full = os.path.join(directory, name)
            st = os.lstat(full)
            kind = _kind(st.st_mode)
            entry: dict[str, Any] = {
                "path": rel_dir + name, "kind": kind, "mode": stat.S_IMODE(st.st_mode),
                "size": st.st_size, "nlink": st.st_nlink, "data": None, "target": None, "rdev": 0,
            }
            entries.append(entry)
            if kind == "dir":
                if depth < max_depth:        # deeper is rejected at ingestion anyway
                    stack.append((full, entry["path"] + "/", depth + 1))
            elif kind == "symlink":
                entry["target"] = os.readlink(full)
            elif kind in ("chr", "blk"):
                entry["rdev"] = st.st_rdev
            elif kind == "file":
                files += 1
                total += st.st_size
                if files > max_files or total > max_bytes:
                    for e in entries:
                        e["data"] = None
                    return entries
                if st.st_nlink == 1 and not st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                    with open(full, "rb") as f:
                        entry["data"] = f.read()
                    entry["size"] = len(entry["data"])
    return entries
