"""Persistent workers on the local engine (BUILD.md, "Persistent workers").

A :class:`WorkerPool` belongs to one batch (``Session.map``). For a spec that declares
``worker: {protocol: jsonl}``, the local adapter hands each miss to the pool instead of starting a
container per run: the pool keeps long-lived containers of the processor — at most one per item
in flight, so ``--jobs N`` means N workers — each under exactly the sandbox and limits of a
one-shot container, and sends each request as one JSON line on the worker's stdin. The worker
answers one JSON line on stdout; everything else it prints goes to stderr.

Per-request isolation. Docker cannot add mounts to a running container, so every worker gets two
mounts of directories the pool owns, and each request gets fresh content in them::

    work-v1/<pool id>/w<n>/inputs/     read-only at /artifacts/inputs: the attachments of the request
                                       in flight, and only those (linked before it, removed after)
    work-v1/<pool id>/w<n>/requests/   read-write at /theoryx/requests; per request a directory with
                                       an unguessable name: inputs.json, outputs/, result/, stdout.log
    work-v1/<pool id>/w<n>/done/       where a request's directory goes when its answer arrives

When the answer arrives the request's directory is moved out of the container's view (checked
without following links: a worker cannot substitute a link for it) and its ``outputs``/``result``
become the run's workspace, so a request's outputs are only ever what that request wrote; the
next request starts in a new, empty directory. When theoryx runs as root (the container as uid
10001) the request's tree is handed back to root and its directories made read-only to others
*before* it is listed, so the still-running worker cannot change it while it is ingested.

A worker that crashes, exceeds the request's timeout or is OOM-killed is removed and replaced:
only that request fails, with the Outcome a one-shot container would have given
(``ERR_PROCESSOR_FAILED``, ``ERR_TIMEOUT``, ``ERR_OOM``). A worker that breaks the protocol
(a stdout line that is not a JSON answer to the request in flight) is removed the same way. After
``max_requests`` answers a worker is recycled. :meth:`WorkerPool.close` (the batch ended, or was
interrupted) removes every container; requests still in flight fail with :class:`AdapterError`.

A batch cancelled (Ctrl-C) stops, as it stops one-shot containers, the worker of every request in
flight (SIGTERM, SIGKILL after the grace period; :class:`~theoryx.adapters.base.Cancellation`):
that request fails with :class:`ExecutionCancelled` unless its answer arrived first, and a request
waiting for a worker gives up with the same error without being sent.

The pool's directory is held by a lease named like it (``leases/<pool id>.lease``), so a gc
leaves it alone while the batch runs and removes it if the process was killed; containers carry
the owner label of :mod:`~theoryx.adapters.local.adapter`, whose sweep removes those of a dead
process.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import queue
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theoryx.adapters.base import (
    CANCELLATION,
    CONTAINER_INPUTS_DIR,
    Cancellation,
    Captures,
    ExecRequest,
    Outcome,
    check_cancelled,
    stoppable,
)
from theoryx.adapters.local import docker_client
from theoryx.adapters.local.docker_client import Attached, mapped
from theoryx.adapters.logs import scrub
from theoryx.core import trees
from theoryx.core.ids import new_execution_id
from theoryx.errors import AdapterError, ExecutionCancelled, TheoryxError
from theoryx.store.home import Home
from theoryx.store.leases import Lease
from theoryx.store.leftovers import remove_tree

if TYPE_CHECKING:
    from theoryx.adapters.local.adapter import LocalAdapter, Options
    from theoryx.adapters.local.images import ImageInfo

REQUESTS_DIR = "/theoryx/requests"
"""Where a worker finds its requests' directories (read-write mount)."""
LABEL_WORKER = "theoryx.worker"
LINE_LIMIT = 1 << 20
"""The longest stdout line a worker may send (an answer is a few dozen bytes)."""
PENDING_LIMIT = 64 << 10
"""stderr written while no request is in flight, kept for the next request (head only)."""
PIPELINE = 4
"""Items a batch keeps in flight per container: while ``jobs`` containers work, the batch's other
threads prepare, ingest and record (theoryx's share of a small item is larger than the worker's:
measured on ``llm/litellm@1``, about 40 ms against 10 ms)."""
CLOSE_WAIT_S = 30.0
_EXITED_WAIT_S = 10.0
_CANCEL_POLL_S = 0.25
"""How often a request waiting for a worker looks whether its batch was cancelled."""
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Answer:
    """What the reader saw on a worker's stdout: a ``response`` (the parsed line), a
    ``protocol`` violation (``detail`` says which), or the ``eof`` of its streams."""

    kind: str
    body: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


@dataclass(frozen=True)
class Served:
    """How one request ended, before it became an :class:`Outcome`."""

    exit_code: int
    timed_out: bool = False
    oom_killed: bool = False
    note: str = ""          # a line theoryx adds to the request's stderr (why the worker died)


class _OutOfTurn(Exception):
    """An idle worker spoke (an answer, a protocol violation) or ended between requests: it is
    stopped, and the next request goes to another worker (also when the worker's end reached the
    reader only after that request was sent: the engine's exit time tells, see
    :meth:`Worker._exited`)."""


OUT_OF_TURN_RETRIES = 3
"""How many workers in a row may be found misbehaving between requests before a request fails."""


def _excerpt(data: bytes, secrets: tuple[str, ...], limit: int = 120) -> str:
    """The start of what a worker sent, for a message: its secret values scrubbed *before* it is
    cut (a cut through a value would leave its first characters unscrubbable) and quoted."""
    text = scrub(data, secrets).decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


class Worker:
    """One long-lived container serving requests one at a time (see the module docstring)."""

    def __init__(self, pool: WorkerPool, key: str, number: int, max_requests: int) -> None:
        self.pool, self.key, self.number, self.max_requests = pool, key, number, max_requests
        self.name = f"theoryx-w-{pool.id}-{number}"
        self.root = pool.root / f"w{number}"
        self.container_id = ""
        self.served = 0
        self.dead = False
        self.interrupted = False    # stopped by the batch's cancellation: never given work again
        self.answers: queue.Queue[Answer] = queue.Queue()
        self._attached: Attached | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._capture: Captures | None = None
        self._pending = bytearray()
        self._serving = False
        self.secrets: tuple[str, ...] = ()     # the values of the secrets in its environment

    def _scrubbed(self, text: str) -> str:
        return scrub(text.encode("utf-8", "surrogatepass"), self.secrets).decode("utf-8", "replace")

    def _shown(self, value: Any) -> str:
        """A JSON value of an answer, for a message: scrubbed before it is quoted and cut."""
        text = repr(self._scrubbed(value)) if isinstance(value, str) else self._scrubbed(repr(value))
        return text if len(text) <= 40 else text[:40] + "..."

    # -- paths -------------------------------------------------------------------------------

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def requests(self) -> Path:
        return self.root / "requests"

    @property
    def done(self) -> Path:
        return self.root / "done"

    # -- life --------------------------------------------------------------------------------

    def start(self, adapter: LocalAdapter, request: ExecRequest, image: str, opts: Options) -> None:
        """Create, attach and start the container; on any failure nothing is left behind."""
        from theoryx.adapters.local import adapter as local

        for d in (self.root, self.inputs, self.requests, self.done):
            d.mkdir(mode=0o755)
            os.chmod(d, 0o755)
        spec = request.spec
        self.secrets = tuple(request.secrets.values())

        def bind(source: Path, target: str, read_only: bool) -> dict[str, Any]:
            return {"Type": "bind", "Source": str(source.resolve()), "Target": target, "ReadOnly": read_only}

        mounts = [bind(self.inputs, CONTAINER_INPUTS_DIR, True), bind(self.requests, REQUESTS_DIR, False)]
        host = local.host_config(adapter.client, spec, opts, mounts)
        assert spec.worker is not None
        env = {"HOME": "/tmp", **spec.env, "THEORYX_WORKER": spec.worker.protocol, "THEORYX_REF": str(spec.ref),
               "THEORYX_STREAM": "0", **dict(request.secrets)}
        labels = {local.LABEL_MANAGED: "1", local.LABEL_OWNER: local.owner_label(), local.LABEL_REF: str(spec.ref),
                  LABEL_WORKER: self.pool.id}
        # detach=False with stdin_open: the engine attaches stdin with StdinOnce, so the worker's
        # stdin ends when theoryx's connection does (also when theoryx is killed).
        config = {"image": image, "command": None if spec.command is None else list(spec.command),
                  "user": local.container_user(), "environment": env, "labels": labels, "host_config": host,
                  "name": self.name, "detach": False, "stdin_open": True, "tty": False}
        client = adapter.client
        try:
            with mapped(f"creating a worker container for {spec.ref}"):
                self.container_id = str(client.api.create_container(**config)["Id"])
            self._attached = docker_client.attach_stdio(client, self.container_id)
            self._reader = threading.Thread(target=self._read, name=f"theoryx-worker-{self.number}", daemon=True)
            self._reader.start()
            with mapped(f"starting a worker container for {spec.ref}"):
                client.api.start(self.container_id)
        except BaseException:
            self.stop()
            raise

    def interrupt(self) -> None:
        """Stop the container cleanly for a cancelled batch (SIGTERM, SIGKILL after the grace
        period): the request in flight, unless already answered, ends with
        :class:`ExecutionCancelled`. A :class:`~theoryx.adapters.base.Cancellation` callback: safe
        to call on a container already gone, never raises."""
        self.interrupted = True
        from theoryx.adapters.local import adapter as local

        local.stop_gracefully(self.pool.client, self.container_id or self.name)

    def stop(self) -> None:
        """Remove the container (killing it) and, unless a request is being collected (its logs
        are still read), the worker's directories. Idempotent; never raises for a container
        already gone."""
        self.dead = True
        from theoryx.adapters.local import adapter as local

        with contextlib.suppress(TheoryxError):
            local.remove(self.pool.client, self.container_id or self.name)
        if self._attached is not None:
            self._attached.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5.0)
        with self._lock:
            self._capture = None        # the request thread that set it closes it
            if self._serving:
                return
        remove_tree(self.root)

    # -- the reader thread -------------------------------------------------------------------

    def _read(self) -> None:
        """Split the container's output: stdout into answers, stderr into the request in flight."""
        assert self._attached is not None
        line = bytearray()
        broken = False
        try:
            for stream, data in self._attached.frames():
                if stream == "stderr":
                    self._stderr(data)
                    continue
                if broken:
                    continue
                line += data
                while (end := line.find(b"\n")) >= 0:
                    self._line(bytes(line[:end]))
                    del line[:end + 1]
                if len(line) > LINE_LIMIT:
                    self.answers.put(Answer("protocol", detail=f"a stdout line longer than {LINE_LIMIT} bytes"))
                    broken = True
                    line.clear()
            if line.strip() and not broken:
                self.answers.put(Answer("protocol", detail="an unterminated stdout line "
                                                           + _excerpt(bytes(line), self.secrets)))
        finally:
            self.answers.put(Answer("eof"))

    def _line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.answers.put(Answer("protocol", detail="a stdout line that is not JSON: "
                                                       + _excerpt(raw, self.secrets)))
            return
        if not isinstance(body, dict):
            self.answers.put(Answer("protocol", detail="a stdout line that is not a JSON object: "
                                                       + _excerpt(raw, self.secrets)))
            return
        self.answers.put(Answer("response", body))

    def _stderr(self, data: bytes) -> None:
        with self._lock:
            if self._capture is None:
                room = PENDING_LIMIT - len(self._pending)
                if room > 0:
                    self._pending += data[:room]
                return
            with contextlib.suppress(Exception):    # a capture failing (full disk) loses log bytes only
                self._capture.write("stderr", data)

    # -- one request -------------------------------------------------------------------------

    def serve(self, request: ExecRequest, timeout: float) -> tuple[Served, dict[str, int], int]:
        """Run one request; ``(how it ended, log bytes dropped, duration ms)``. Its outputs and
        result are left in ``request.workspace`` (only on an answer). A worker that did not
        answer is stopped (:attr:`dead`)."""
        if not self.answers.empty():       # before anything is written for this request
            self.stop()
            raise _OutOfTurn(self.answers.get_nowait().kind)
        ws = request.workspace
        token = secrets.token_hex(12)
        here = self.requests / token
        seq = self.served + 1
        with self._lock:
            self._serving = True
        captures: Captures | None = None
        try:
            self._prepare(here, request)
            captures = Captures(request)
            t0 = time.monotonic()
            with self._lock:
                if self._pending:
                    captures.write("stderr", bytes(self._pending))
                    self._pending.clear()
                self._capture = captures
            where = f"{REQUESTS_DIR}/{token}"
            line = {
                "id": seq, "inputs_path": f"{where}/inputs.json", "outputs_dir": f"{where}/outputs",
                "result_path": f"{where}/result/result.json", "stdout_path": f"{where}/stdout.log",
                "stderr_path": f"{where}/stderr.log", "write_prefix": request.write_prefix,
                "seed": request.seed, "execution_id": request.execution_id, "ref": str(request.spec.ref),
            }
            assert self._attached is not None
            sent_at: float | None = time.time()     # wall clock, as the engine's FinishedAt
            try:
                self._attached.send((json.dumps(line, sort_keys=True) + "\n").encode())
            except OSError:                         # gone: its end of stream says why
                sent_at = None
            served = self._await(seq, timeout, sent_at)
            duration_ms = int((time.monotonic() - t0) * 1000)
            with self._lock:
                self._capture = None
            _seal(here)
            for name in ("stdout", "stderr"):          # after the stream's bytes: a crash's last words
                _copy_log(here / f"{name}.log", captures, name)
            if served.note:
                captures.write("stderr", f"[theoryx: {served.note}]\n".encode())
            if not self.dead:
                self.served = seq
                self._claim(here, token, ws)
        except BaseException:
            self.stop()
            raise
        finally:
            with self._lock:
                self._capture = None
                self._serving = False
            dropped = captures.close() if captures is not None else {}
            if self.dead:
                remove_tree(self.root)
            else:
                self._unlink_inputs()
                remove_tree(here)
                remove_tree(self.done / token)
        return served, dropped, duration_ms

    def _await(self, seq: int, timeout: float, sent_at: float | None) -> Served:
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.answers.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                self.stop()
                return Served(137, timed_out=True)
            if answer.kind == "eof":
                return self._exited(seq, sent_at)
            if answer.kind == "protocol":
                self.stop()
                return Served(1, note=f"worker protocol error: {answer.detail}; the worker was stopped")
            body = answer.body
            if isinstance(body.get("id"), bool) or body.get("id") != seq:     # true == 1 in Python
                self.stop()
                return Served(1, note=f"worker protocol error: an answer with id "
                                      f"{self._shown(body.get('id'))} while request "
                                      f"{seq} was in flight; the worker was stopped")
            code = body.get("exit_code")
            if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
                self.stop()
                return Served(1, note=f"worker protocol error: exit_code must be an integer from 0 to 255 (as a "
                                      f"process's), got {self._shown(code)}; the worker was stopped")
            error = body.get("error")
            said = " ".join(self._scrubbed(str(error)).split())[:2000]     # scrubbed before the cut
            note = f"worker: {said}" if error not in (None, "") and code != 0 else ""
            return Served(code, note=note)

    def _exited(self, seq: int, sent_at: float | None) -> Served:
        """The worker's streams ended before it answered: how did the container end? A worker
        that had already ended when the request was sent (the send failed, or the engine's
        ``FinishedAt`` is earlier: its end of stream had not reached the reader yet when
        :meth:`serve` looked) never saw the request: :class:`_OutOfTurn`, and another worker
        serves it. Otherwise the request failed with it."""
        if self.interrupted:
            self.stop()
            raise ExecutionCancelled(f"the batch was cancelled: the worker serving request {seq} was stopped")
        if self.pool.closed:
            self.stop()
            raise AdapterError("the batch was stopped while this request was running: its worker was removed")
        client = self.pool.client
        state: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            client.api.wait(self.container_id, timeout=_EXITED_WAIT_S)
        with contextlib.suppress(Exception):
            state = client.api.inspect_container(self.container_id)["State"]
        self.stop()
        oom = bool(state.get("OOMKilled"))
        # the engine's clock is this machine's only through a unix socket (a remote engine's may
        # run behind: a worker that died on the request would look as if it had ended before it)
        finished = _engine_time(state.get("FinishedAt")) if docker_client.socket_path() is not None else None
        if not oom and (sent_at is None or (finished is not None and finished < sent_at)):
            raise _OutOfTurn(f"it had exited (code {state.get('ExitCode', '?')}) before request {seq} was sent")
        code = int(state.get("ExitCode", -1) or 0)
        what = "was killed for exceeding its memory limit" if oom else f"exited with code {code}"
        return Served(code if code != 0 else 1, oom_killed=oom,
                      note=f"the worker {what} before answering request {seq}; it was replaced")

    # -- directories -------------------------------------------------------------------------

    def _prepare(self, here: Path, request: ExecRequest) -> None:
        """The request's directory and its attachments (the only ones in the inputs mount)."""
        ws = request.workspace
        here.mkdir(mode=0o755)
        os.chmod(here, 0o755)
        os.chmod(ws.inputs_json, 0o644)          # theoryx never reads it back: a link will do
        os.link(ws.inputs_json, here / "inputs.json")
        for log in ("stdout.log", "stderr.log"):
            (here / log).touch(0o644)
        writable = [here / "outputs", here / "result", here / "stdout.log", here / "stderr.log"]
        for d in writable[:2]:
            d.mkdir(mode=0o755)
            os.chmod(d, 0o755)
        if os.geteuid() == 0:
            from theoryx.adapters.local.adapter import CONTAINER_UID

            for p in writable:
                os.chown(p, CONTAINER_UID, CONTAINER_UID)
        for top in ws.inputs.iterdir() if ws.inputs.is_dir() else ():
            dest = self.inputs / top.name
            dest.mkdir(mode=0o755)
            os.chmod(dest, 0o755)
            for f in top.iterdir():
                os.link(f, dest / f.name)

    def _unlink_inputs(self) -> None:
        for entry in list(self.inputs.iterdir()) if self.inputs.is_dir() else ():
            remove_tree(entry)

    def _claim(self, here: Path, token: str, ws: Any) -> None:
        """Move the answered (and sealed) request's directory out of the container's view and make
        its ``outputs``/``result`` the run's."""
        moved = self.done / token
        try:
            os.rename(here, moved)          # the entry itself: a link stays a link
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(os.lstat(moved).st_mode):
            return
        for name, target in (("outputs", ws.outputs), ("result", ws.result_dir)):
            source = moved / name
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.lstat(source).st_mode):
                    os.rmdir(target)                    # empty: made by the miss for a one-shot run
                    os.rename(source, target)
                    if not stat.S_ISDIR(os.lstat(target).st_mode):   # swapped in the meantime
                        remove_tree(target)
                        target.mkdir()


class WorkerPool:
    """A batch's persistent workers on the local engine; see the module docstring. Thread-safe:
    the batch's threads call :meth:`execute` concurrently."""

    def __init__(self, home: Home, jobs: int) -> None:
        self.home, self.jobs = home, max(1, jobs)
        self.in_flight = PIPELINE * self.jobs
        self._slots_free = self.jobs                            # one-shot containers that may start
        self._slot_queue: collections.deque[object] = collections.deque()   # waiting for one, in order
        self.id = new_execution_id()
        self.root = home.work / self.id
        self.client: Any = None
        self.closed = False
        self._cond = threading.Condition()
        self._idle: dict[str, list[Worker]] = {}
        self._queues: dict[str, collections.deque[object]] = {}   # requests waiting, per key, in order
        self._all: set[Worker] = set()
        self._live: dict[str, int] = {}     # workers started and not yet retired, per key
        self._busy = 0
        self._numbers = 0
        self._images: dict[str, ImageInfo] = {}
        self._image_lock = threading.Lock()
        self._lease: Lease | None = None
        self.started = 0            # workers started so far (tests, benchmarks)

    # -- the adapter's entry -----------------------------------------------------------------

    def execute(self, adapter: LocalAdapter, request: ExecRequest, opts: Options) -> Outcome:
        """Serve ``request`` on a worker of its image and resource class (started if none is
        idle) and report it as a one-shot container would. In a cancelled batch it raises
        :class:`ExecutionCancelled` (see the module docstring)."""
        cancellation = CANCELLATION.get()          # set when this run is an item of a batch
        with self._cond:
            if self.closed:
                raise _stopped()
            self._busy += 1
        try:
            self._open(adapter)
            info = self.image(adapter, request)
            key = self._key(request, info.name, opts)
            for attempt in range(OUT_OF_TURN_RETRIES + 1):
                worker = self._take(key, adapter, request, info.name, opts, cancellation)
                try:
                    with stoppable(f"{worker.name}/{request.execution_id}", worker.interrupt):  # cancelled: now
                        if worker.interrupted:
                            raise ExecutionCancelled(f"the batch was cancelled before {request.spec.ref} was sent "
                                                     "to a worker")
                        served, dropped, duration_ms = worker.serve(request, opts.timeout)
                    break
                except _OutOfTurn as exc:       # stopped, so given back as dead: take another
                    if attempt == OUT_OF_TURN_RETRIES:
                        raise AdapterError(f"{attempt + 1} workers of {request.spec.ref} in a row spoke or ended "
                                           f"between requests (the last: {exc}); this request was never sent "
                                           "to one") from None
                except OSError as exc:
                    if worker.interrupted:
                        raise ExecutionCancelled(f"the batch was cancelled while {request.spec.ref} ran") from exc
                    if self.closed:
                        raise _stopped() from exc
                    raise AdapterError(f"worker {worker.name}: could not hand over request "
                                       f"{request.execution_id}: {exc}") from exc
                finally:
                    self._give_back(worker)
            from theoryx.adapters.local.adapter import _seconds

            meta = {"timeout_s": _seconds(opts.timeout), "image": info.name, "image_id": info.id,
                    "image_built": info.built, "network": opts.network, "worker": worker.name,
                    "worker_request": worker.served if not served.timed_out else worker.served + 1}
            return Outcome(served.exit_code, served.timed_out, served.oom_killed, duration_ms, meta, dropped)
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def one_shot(self) -> Iterator[None]:
        """Hold one of ``jobs`` slots while a one-shot container runs in this batch (a spec
        without ``worker``, or a streamed run): the batch keeps :attr:`in_flight` items going,
        but never more than ``jobs`` containers."""
        ticket = object()
        with self._cond:
            self._slot_queue.append(ticket)
            try:
                # first come, first served (as workers are), looking at the batch's cancellation
                # every _CANCEL_POLL_S without losing the place in line
                while not (self._slot_queue[0] is ticket and self._slots_free > 0):
                    check_cancelled("its container")
                    self._cond.wait(_CANCEL_POLL_S)
                self._slots_free -= 1
            finally:
                self._slot_queue.remove(ticket)
                self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._slots_free += 1
                self._cond.notify_all()

    def close(self) -> None:
        """Stop and remove every worker, wait (bounded) for requests in flight to fail, then
        remove the pool's directory and release its lease. Idempotent."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()         # threads waiting for a worker give up
        stoppers = [threading.Thread(target=w.stop, name="theoryx-worker-stop") for w in workers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        with self._cond:
            self._cond.wait_for(lambda: self._busy == 0, timeout=CLOSE_WAIT_S)
        remove_tree(self.root)
        if self._lease is not None:
            self._lease.release()

    # -- internals ---------------------------------------------------------------------------

    def connect(self) -> Any:
        """The batch's engine client: connected, and containers of dead runs swept, once (each
        miss of a one-shot run does both; a batch of thousands need not)."""
        with self._cond:
            if self.client is None:
                from theoryx.adapters.local.adapter import remove_leftovers

                client = docker_client.connect()
                remove_leftovers(client)
                self.client = client
            return self.client

    def _open(self, adapter: LocalAdapter) -> None:
        """The engine client and the pool's leased directory, on first use."""
        with self._cond:
            if self.client is None:
                self.client = adapter.client
            if self._lease is not None:
                return
            self.home.leases.mkdir(parents=True, exist_ok=True)
            self._lease = Lease(self.home.leases, self.id)
            self.root.mkdir(parents=True, mode=0o700)

    def image(self, adapter: LocalAdapter, request: ExecRequest) -> ImageInfo:
        """The image of ``request`` for this batch, workers and one-shot containers alike: resolved
        (built when missing; rebuilt when the batch asked for ``--build``) by the first item that
        needs it, and reused by the others, which wait while it builds: a batch builds an image
        once, not once per miss."""
        from theoryx.adapters.local.images import ImageInfo

        if request.image is not None:
            return ImageInfo(request.image, "")
        from theoryx.adapters.local.adapter import build_context

        spec = request.spec
        context = build_context(request)
        which = f"{spec.ref}\0{spec.source}\0{'' if context is None else context.manifest.cid}"
        with self._image_lock:            # one build even when every thread asks at once
            info = self._images.get(which)
            if info is None:
                info = self._images[which] = adapter.image(spec, context)
        return info

    @staticmethod
    def _key(request: ExecRequest, image: str, opts: Options) -> str:
        """The image and resource class a worker serves: everything its container was created
        with (secret values only as a digest, and only in memory)."""
        spec = request.spec
        secret = hashlib.sha256(json.dumps(sorted(request.secrets.items())).encode()).hexdigest()
        return json.dumps({"ref": str(spec.ref), "image": image, "command": spec.command, "env": spec.env,
                           "runtime": spec.runtime.to_dict(), "network": opts.network, "secrets": secret,
                           "worker": None if spec.worker is None else spec.worker.to_dict()}, sort_keys=True)

    def _take(self, key: str, adapter: LocalAdapter, request: ExecRequest, image: str, opts: Options,
              cancellation: Cancellation | None = None) -> Worker:
        """An idle worker of ``key``; else a new one while there are fewer than ``jobs``; else
        wait for one to be given back (the wait does not count against the request's timeout).
        Requests of one key are served in the order they asked (first come, first served: in a
        batch whose output is in input order, an early item never waits behind later ones).
        Raises :class:`ExecutionCancelled` once ``cancellation`` is cancelled."""
        with self._cond:
            queue = self._queues.setdefault(key, collections.deque())
            ticket = object()
            queue.append(ticket)
            try:
                while True:
                    if self.closed:
                        raise _stopped()
                    if cancellation is not None and (cancellation.cancelled or cancellation.draining):
                        check_cancelled(f"its request to a worker of {request.spec.ref}")
                    if queue[0] is ticket:
                        idle = self._idle.get(key)
                        if idle:
                            return idle.pop()
                        if self._live.get(key, 0) < self.jobs:
                            break
                    self._cond.wait(None if cancellation is None else _CANCEL_POLL_S)
            finally:
                queue.remove(ticket)
                self._cond.notify_all()         # the next in line looks again
            self._live[key] = self._live.get(key, 0) + 1
            self._numbers += 1
            number = self._numbers
        assert request.spec.worker is not None
        worker = Worker(self, key, number, request.spec.worker.max_requests)
        try:
            worker.start(adapter, request, image, opts)
        except BaseException:
            self._retired(key)
            raise
        with self._cond:
            self.started += 1
            if not self.closed:
                self._all.add(worker)
                return worker
        self._retired(key)
        worker.stop()
        raise _stopped()

    def _retired(self, key: str) -> None:
        with self._cond:
            self._live[key] -= 1
            self._cond.notify_all()

    def _give_back(self, worker: Worker) -> None:
        """Idle again, or retired: dead, recycled after ``max_requests``, or the pool closed."""
        with self._cond:
            keep = not (worker.dead or worker.interrupted or self.closed or worker.served >= worker.max_requests)
            if keep:
                self._idle.setdefault(worker.key, []).append(worker)
                self._cond.notify_all()
                return
            self._all.discard(worker)
        worker.stop()
        self._retired(worker.key)


def _engine_time(text: Any) -> float | None:
    """A container engine's RFC 3339 time (``2026-12-02T12:34:56.123456789Z``, nanoseconds or
    fewer digits) as POSIX seconds; None when absent, zero (``0001-01-01T00:00:00Z``: never
    finished) or not understood."""
    import datetime

    if not isinstance(text, str) or not text.endswith("Z") or text.startswith("0001-"):
        return None
    whole, _, fraction = text[:-1].partition(".")
    try:
        moment = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC)
        return moment.timestamp() + (float(f"0.{fraction}") if fraction.isdigit() else 0.0)
    except ValueError:
        return None


def _stopped() -> AdapterError:
    return AdapterError("the batch was stopped while this request was running: its worker was removed")


def _copy_log(path: Path, captures: Captures, stream: str) -> None:
    """Append a request's log file to its capture: only a regular file, never through a link, and
    no more than its size when opened (a worker still writing to it cannot make this endless)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        left = st.st_size
        while left > 0 and (chunk := os.read(fd, min(_CHUNK, left))):
            captures.write(stream, chunk)
            left -= len(chunk)
    finally:
        os.close(fd)


def _seal(top: Path) -> None:
    """When theoryx runs as root: hand a request's tree back to root and take write permission on
    its directories from everyone else, each directory *before* it is listed, so the worker —
    still running, as uid 10001 without capabilities — can neither add, rename nor replace
    anything in it from then on. Set-id files keep their owner (a chown would clear the bits that
    output ingestion must see and reject). Nothing is followed: directories are changed through
    descriptors opened without following links, other entries relative to their sealed
    directory (:func:`theoryx.core.trees.visit`: any depth, any path length)."""
    if os.geteuid() != 0:
        return

    def seal(fd: int) -> None:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, mode & ~0o022 | 0o700)

    def entry(fd: int, name: str, st: os.stat_result) -> None:
        if not stat.S_ISDIR(st.st_mode) and not (st.st_mode & 0o6000 and not stat.S_ISLNK(st.st_mode)):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, 0, 0, dir_fd=fd, follow_symlinks=False)

    trees.visit(top, entry, opened=seal)


