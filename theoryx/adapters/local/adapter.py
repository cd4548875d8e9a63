"""The ``local`` adapter: the processor's image on the local Docker engine (docker SDK).

Contract (see :mod:`theoryx.adapters.base` and BUILD.md, "The processor contract"):

- mounts: ``workspace.inputs`` read-only at ``/artifacts/inputs``, ``workspace.inputs_json``
  read-only at ``/theoryx/inputs.json``, ``workspace.result_dir`` read-write at
  ``/theoryx/result``, ``workspace.outputs`` read-write at the write prefix;
- environment: ``request.env()``, ``HOME=/tmp`` unless the spec sets it, and the secrets, whose
  values travel only in the create-container API request (never a command line, label or log);
- sandbox: network ``none`` unless ``runtime.network`` (then ``bridge``), read-only root, tmpfs
  ``/tmp`` of ``runtime.tmpfs`` MiB (noexec, nosuid, nodev), all capabilities dropped,
  no-new-privileges, user 10001:10001 (the host's uid:gid when theoryx is not root), pids,
  memory (= memory + swap) and CPU limits from the spec, GPUs via device requests;
- a wall-clock timeout (``runtime.timeout``): the container is killed and the Outcome says
  ``timed_out``; an OOM kill (``State.OOMKilled``) says ``oom_killed``;
- stdout/stderr stream through the run's log captures (:class:`~theoryx.adapters.base.Captures`)
  into ``workspace.stdout``/``workspace.stderr``: secret values scrubbed, a bounded head and tail
  kept (``limits.log_bytes``), the rest counted in ``Outcome.log_dropped``; when
  ``request.stream`` is set every scrubbed chunk is also passed to it live. The engine's own
  json-file log of the container is capped too (:func:`engine_log_config`);
- containers are labelled ``theoryx.managed=1`` plus the execution id and the owner process,
  never auto-removed, and removed in ``finally`` (also on Ctrl-C); containers whose owner
  process is gone are removed when the next local adapter is created.
- persistent workers: within a batch (``ExecRequest.workers``, a
  :class:`~theoryx.adapters.local.workers.WorkerPool`), a spec that declares ``worker`` is served
  by a long-lived container of the same image and sandbox instead of one container per run
  (not under ``--stream``); the Outcome is the one a one-shot container would have given.

Adapter options (:data:`OPTIONS`; ``--adapter-opts-json``, never in the memo key): ``timeout``
(seconds, > 0, at most :data:`~theoryx.adapters.base.MAX_TIMEOUT_S`) and ``network`` (``none``,
``bridge`` or ``host``; tests use ``host`` to reach 127.0.0.1). ``bridge`` and ``host`` open the
network and are refused for a spec with ``runtime.network: false`` (:class:`AdapterOptionsError`):
the memo key says the result was computed without network. Every other sandbox switch (memory,
CPU, pids, tmpfs, read-only root, capabilities, user) comes from the spec only.

Errors: :class:`DockerUnavailable` (no engine), :class:`ImageNotFound`, :class:`ImageBuildError`,
:class:`AdapterOptionsError` (bad options), :class:`AdapterError` (any other engine failure, or a GPU
requested where the engine has none).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from theoryx.adapters.base import (
    CONTAINER_INPUTS_DIR,
    CONTAINER_INPUTS_JSON,
    CONTAINER_RESULT_DIR,
    MAX_TIMEOUT_S,
    AdapterBase,
    Captures,
    ExecRequest,
    Option,
    OptionSchema,
    Outcome,
    check_cancelled,
    interrupts_deferred,
    stoppable,
    timeout_value,
)
from theoryx.adapters.local import docker_client, images
from theoryx.adapters.local.docker_client import mapped, translate
from theoryx.adapters.logs import Scrubber as Scrubber  # re-exported: tests reach it here
from theoryx.core import notices, trees
from theoryx.errors import AdapterError, ExecutionCancelled, TheoryxError
from theoryx.spec.model import ProcessorSpec
from theoryx.store.handle import Stores
from theoryx.store.home import Home, default_home

CONTAINER_UID = 10001
LABEL_MANAGED = "theoryx.managed"
LABEL_EXECUTION = "theoryx.execution"
LABEL_OWNER = "theoryx.owner"
LABEL_REF = "theoryx.ref"
NETWORKS = ("none", "bridge", "host")
OPTIONS = OptionSchema("local", (
    Option("timeout", "number", "the wall-clock timeout in seconds", positive=True, maximum=MAX_TIMEOUT_S),
    Option("network", "choice", "the container's network", choices=NETWORKS,
           sandbox="runtime.network", closed=("none",)),
))
_KILL_GRACE_S = 30.0
_STOP_GRACE_S = 10
"""Seconds a container of a cancelled batch gets between SIGTERM and SIGKILL (``docker stop``)."""
_LOG_DRAIN_S = 10.0


# -- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The validated adapter options of one run."""

    timeout: float
    network: str

    @classmethod
    def parse(cls, spec: ProcessorSpec, raw: Mapping[str, Any]) -> Options:
        """:class:`AdapterOptionsError` for unknown keys, bad values, or a network the spec
        keeps closed; defaults from the spec."""
        given = OPTIONS.parse(raw, spec)
        network = given.get("network", "bridge" if spec.runtime.network else "none")
        return cls(timeout_value(spec, given), str(network))


# -- ownership of containers -------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks (tells a reused pid apart), or ""."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return fields.rsplit(")", 1)[-1].split()[19]


def owner_label(pid: int | None = None) -> str:
    """``host/boot id/pid/start ticks`` of the process that owns a container."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_ticks(pid)}"


def owner_gone(label: str) -> bool:
    """True when ``label`` names a process of this host that no longer runs. Containers of
    other hosts sharing the engine are never judged."""
    parts = label.split("/")
    if len(parts) != 4 or parts[0] != socket.gethostname():
        return False
    host_boot = _boot_id()
    if parts[1] != host_boot:
        return host_boot != "unknown"
    if not parts[2].isdigit():
        return False
    pid = int(parts[2])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return _start_ticks(pid) != parts[3]


def remove_leftovers(client: Any) -> list[str]:
    """Remove theoryx containers whose owner process is gone; return their ids."""
    with mapped("listing leftover containers"):
        found = client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"})
    removed = []
    for c in found:
        if owner_gone((c.get("Labels") or {}).get(LABEL_OWNER, "")):
            with contextlib.suppress(Exception):   # racing another cleaner is fine
                client.api.remove_container(c["Id"], force=True)
                removed.append(c["Id"])
    return removed


# -- host directories --------------------------------------------------------------------------


def container_user() -> str:
    """10001:10001 when theoryx runs as root (it hands the writable dirs over), else the host's
    uid:gid so that the files the container writes stay movable into the CAS."""
    if os.geteuid() == 0:
        return f"{CONTAINER_UID}:{CONTAINER_UID}"
    return f"{os.getuid()}:{os.getgid()}"


def prepare_dirs(request: ExecRequest) -> None:
    """Make inputs world-readable (dirs 0755, inputs.json 0644; CAS links are already 0444 and
    are never chmodded: they share the blob's inode) and hand the writable dirs to the container."""
    ws = request.workspace
    for dirpath, _, _ in os.walk(ws.inputs):
        os.chmod(dirpath, 0o755)
    os.chmod(ws.inputs_json, 0o644)
    for d in (ws.outputs, ws.result_dir):
        os.chmod(d, 0o755)
        if os.geteuid() == 0:
            os.chown(d, CONTAINER_UID, CONTAINER_UID)


def reclaim_dirs(request: ExecRequest) -> None:
    """Give the writable dirs and what the container left there back to theoryx's user, without
    following links. Set-id files keep their owner (a chown would silently clear the bits that
    output ingestion must see and reject)."""
    if os.geteuid() != 0:
        return
    uid, gid = os.geteuid(), os.getegid()
    ws = request.workspace

    def reclaim(fd: int, name: str, st: os.stat_result) -> None:
        if not (st.st_mode & 0o6000 and not stat.S_ISDIR(st.st_mode)):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)

    for top in (ws.outputs, ws.result_dir):
        if top.exists():
            os.chown(top, uid, gid, follow_symlinks=False)
            trees.visit(top, reclaim)       # any depth or path length, links never followed


# -- container configuration -------------------------------------------------------------------


def _mounts(request: ExecRequest) -> list[dict[str, Any]]:
    ws = request.workspace
    prefix = request.write_prefix.rstrip("/")

    def bind(source: Path, target: str, read_only: bool) -> dict[str, Any]:
        return {"Type": "bind", "Source": str(source.resolve()), "Target": target, "ReadOnly": read_only}

    return [
        bind(ws.inputs, CONTAINER_INPUTS_DIR, True),
        bind(ws.inputs_json, CONTAINER_INPUTS_JSON, True),
        bind(ws.result_dir, CONTAINER_RESULT_DIR, False),
        bind(ws.outputs, prefix, False),
    ]


def _device_requests(client: Any, spec: ProcessorSpec) -> list[dict[str, Any]] | None:
    """GPU device requests for ``runtime.gpu``; :class:`AdapterError` without a GPU runtime."""
    gpu = spec.runtime.gpu
    if gpu is None:
        return None
    with mapped("reading the engine's runtimes"):
        runtimes = client.info().get("Runtimes") or {}
    if "nvidia" not in runtimes:
        raise AdapterError(
            f"processor {spec.ref} requests a GPU (runtime.gpu: {gpu}) but this Docker engine has no "
            f"GPU runtime (runtimes: {', '.join(sorted(runtimes)) or 'none'}); install the NVIDIA "
            "Container Toolkit, or run it on adapter='modal'", option="adapter",
        )
    count = int(gpu) if gpu.isdigit() else 1
    return [{"Driver": "", "Count": count, "Capabilities": [["gpu"]]}]


def host_config(client: Any, spec: ProcessorSpec, opts: Options, mounts: list[dict[str, Any]]) -> Any:
    """The sandbox (module docstring) with ``mounts``: shared by one-shot containers and workers."""
    rt = spec.runtime
    devices = _device_requests(client, spec)
    with mapped("configuring the container"):
        return client.api.create_host_config(
            mounts=mounts, network_mode=opts.network, read_only=True,
            tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={rt.tmpfs}m"}, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], pids_limit=rt.pids, mem_limit=f"{rt.memory}m",
            memswap_limit=f"{rt.memory}m", nano_cpus=int(rt.cpu * 1e9), device_requests=devices,
            log_config=engine_log_config(spec),
        )


def container_config(client: Any, request: ExecRequest, image: str, opts: Options) -> dict[str, Any]:
    """Keyword arguments of ``create_container`` (the secrets are in ``environment``)."""
    spec = request.spec
    host = host_config(client, spec, opts, _mounts(request))
    env = {"HOME": "/tmp", **request.env(), **dict(request.secrets)}
    labels = {
        LABEL_MANAGED: "1", LABEL_EXECUTION: request.execution_id, LABEL_REF: str(spec.ref),
        LABEL_OWNER: owner_label(),
    }
    return {
        "image": image, "command": None if spec.command is None else list(spec.command),
        "user": container_user(), "environment": env, "labels": labels, "host_config": host,
        "name": f"theoryx-{request.execution_id}", "detach": True, "stdin_open": False, "tty": False,
    }


# -- logs --------------------------------------------------------------------------------------


def engine_log_config(spec: ProcessorSpec) -> dict[str, Any]:
    """The engine's json-file log of the container, capped: theoryx reads the logs through the
    attach stream and only falls back to the engine's copy when attaching failed, so the engine
    need not keep more than a few times what theoryx keeps (a processor printing 1 GiB would
    otherwise leave ~2.5 GB of JSON lines in the engine until the container is removed)."""
    mib = max(1, -(-2 * spec.limits.log_bytes // (1 << 20)))
    return {"Type": "json-file", "Config": {"max-size": f"{mib}m", "max-file": "2"}}


class LogPump:
    """Reads the container's attached stdout/stderr in a thread into the run's log captures
    (scrubbed, bounded; forwarded live to ``request.stream`` when set). ``dropped`` is what the
    captures dropped, once the streams ended."""

    def __init__(self, frames: Any, request: ExecRequest) -> None:
        self.frames = frames
        self.request = request
        self.error: BaseException | None = None
        self.dropped: dict[str, int] = {}
        self._captures = Captures(request)
        self._thread = threading.Thread(target=self._run, name="theoryx-logs", daemon=True)

    def start(self) -> LogPump:
        self._thread.start()
        return self

    def _run(self) -> None:
        captures = self._captures
        try:
            try:
                for chunk_out, chunk_err in self.frames:
                    if chunk_out:
                        captures.write("stdout", chunk_out)
                    if chunk_err:
                        captures.write("stderr", chunk_err)
            finally:
                self.dropped = captures.close()
        except BaseException as exc:   # reported to the main thread, which falls back to logs()
            self.error = exc

    def join(self, timeout: float) -> bool:
        """Wait for the end of the streams; False if they did not end in time."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.frames.close()


def _fetch_logs(client: Any, container_id: str, request: ExecRequest) -> dict[str, int]:
    """Fallback when attaching failed: the engine's stored logs (capped by
    :func:`engine_log_config`, so bytes the engine rotated away are not counted), streamed
    through fresh captures; the bytes they dropped. The failed pump's files are unlinked first:
    its thread, if it still runs, writes into files nobody reads."""
    ws = request.workspace
    for path in (ws.stdout, ws.stderr):
        path.unlink(missing_ok=True)
    captures = Captures(request, forward=False)
    try:
        for name in ("stdout", "stderr"):
            with mapped("reading the container's logs"):
                chunks = client.api.logs(container_id, stdout=name == "stdout", stderr=name == "stderr",
                                         stream=True, follow=False)
                for chunk in chunks:
                    captures.write(name, chunk)
    finally:
        dropped = captures.close()
    return dropped


# -- running -----------------------------------------------------------------------------------


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _terminate_interrupts() -> Iterator[None]:
    """While a container runs, SIGTERM raises KeyboardInterrupt (like Ctrl-C) so that the
    container is still removed; only where SIGTERM has its default (fatal) disposition."""
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)




def _wait(client: Any, container_id: str, timeout: float) -> bool:
    """Wait for the container to exit; kill it at ``timeout``. True when it was killed."""
    t0 = time.monotonic()
    try:
        client.api.wait(container_id, timeout=timeout)
        return False
    except Exception as exc:
        if not docker_client.is_timeout(exc) or time.monotonic() - t0 < timeout * 0.99:
            raise translate(exc, "waiting for the container") from exc
    try:
        client.api.kill(container_id)
    except Exception as exc:
        if not docker_client.is_conflict(exc):     # 409: it exited on its own just now
            raise translate(exc, "killing the timed-out container") from exc
        return False
    with mapped("waiting for the killed container"):
        client.api.wait(container_id, timeout=_KILL_GRACE_S)
    return True


def stop_gracefully(client: Any, container_id: str) -> None:
    """Stop a running container cleanly (SIGTERM, SIGKILL after :data:`_STOP_GRACE_S`), for a
    cancelled batch; a container already gone or stopped is fine, and nothing is raised (the
    thread running it reports the outcome)."""
    with contextlib.suppress(Exception):
        client.api.stop(container_id, timeout=_STOP_GRACE_S)


def remove(client: Any, container_id: str) -> None:
    """Remove the container (killing it if it runs); a container already gone is fine."""
    with interrupts_deferred(), mapped("removing the container"):
        try:
            client.api.remove_container(container_id, force=True)
        except Exception as exc:
            if not docker_client.is_missing(exc):
                raise


def build_context(request: ExecRequest) -> images.BuildContext | None:
    """What ``request``'s image is built from: its action's image identity and the context
    manifest the run was prepared with (never the folder re-read: it may have changed since)."""
    return images.prepared_context(request.spec, request.action.get("image"), request.context)


class LocalAdapter(AdapterBase):
    """Runs processors in containers on the local engine; see the module docstring."""

    name = "local"
    env_class = "container"

    def __init__(self, client: Any, stores: Stores | None, build: bool = False) -> None:
        self.client = client
        self.vendor_root = (stores.home if stores is not None else Home(default_home())).vendor
        self.build = build

    def image(self, spec: ProcessorSpec, context: images.BuildContext | None = None) -> images.ImageInfo:
        """The image for ``spec`` built from ``context`` (what the run's key hashed; None: the
        folder as it is now): built when missing, rebuilt once when ``build`` was asked."""
        info = images.ensure(self.client, spec, self.vendor_root, context=context, force=self.build,
                             notice=notices.progress)
        self.build = False
        return info

    def execute(self, request: ExecRequest) -> Outcome:
        opts = Options.parse(request.spec, request.options)
        from theoryx.adapters.local.workers import WorkerPool

        pool = request.workers
        if isinstance(pool, WorkerPool):       # in a batch
            if request.spec.worker is not None and request.stream is None:
                return pool.execute(self, request, opts)      # a persistent worker serves it
            with pool.one_shot():              # at most `jobs` containers, whatever is in flight
                return self._one_shot(request, opts, pool.image(self, request))
        return self._one_shot(request, opts)

    def _one_shot(self, request: ExecRequest, opts: Options, info: images.ImageInfo | None = None) -> Outcome:
        """One container for this run: create, run, remove. ``info``: the image a batch resolved."""
        if info is None:
            info = (self.image(request.spec, build_context(request)) if request.image is None
                    else images.ImageInfo(request.image, ""))
        prepare_dirs(request)
        config = container_config(self.client, request, info.name, opts)
        check_cancelled(f"the container of {request.spec.ref}")     # an item of a cancelled batch
        with _terminate_interrupts():
            container_id = self._create(config)
            with stoppable(container_id, partial(stop_gracefully, self.client, container_id)) as stopped:
                try:
                    outcome = self._run(container_id, request, opts, stopped)
                    if stopped.is_set():
                        raise ExecutionCancelled(f"the batch was cancelled: the container of {request.spec.ref} "
                                                 f"was stopped after {outcome.duration_ms} ms")
                except BaseException as exc:
                    with contextlib.suppress(TheoryxError):   # the first error is the one to report
                        remove(self.client, container_id)
                    if stopped.is_set() and isinstance(exc, TheoryxError) and not isinstance(exc, ExecutionCancelled):
                        # an engine error caused by the stop (a stopped container's logs or state)
                        raise ExecutionCancelled(f"the batch was cancelled while {request.spec.ref} ran") from exc
                    raise
            remove(self.client, container_id)
        reclaim_dirs(request)
        meta = {**outcome.meta, "image": info.name, "image_id": info.id, "image_built": info.built,
                "network": opts.network}
        return Outcome(outcome.exit_code, outcome.timed_out, outcome.oom_killed, outcome.duration_ms, meta,
                       outcome.log_dropped)

    def _create(self, config: dict[str, Any]) -> str:
        """Create the container; interrupted midway, remove it by name (it may exist already)."""
        try:
            with mapped(f"creating the container for {config['labels'][LABEL_REF]}"):
                return str(self.client.api.create_container(**config)["Id"])
        except BaseException:
            with contextlib.suppress(TheoryxError):
                remove(self.client, config["name"])
            raise

    def _run(self, container_id: str, request: ExecRequest, opts: Options,
             stopped: threading.Event | None = None) -> Outcome:
        """Attach, start, wait (killing at the timeout), collect logs and state. ``stopped`` is
        set by a batch's cancellation: a container stopped before it started would run anyway
        (stopping a created container does nothing), so it is checked around the start."""
        api = self.client.api
        with mapped("attaching to the container"):
            frames = api.attach(container_id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
        pump = LogPump(frames, request).start()
        try:
            if stopped is not None and stopped.is_set():
                raise ExecutionCancelled(f"the batch was cancelled before {request.spec.ref} started")
            with mapped(f"starting the container for {request.spec.ref}"):
                api.start(container_id)
            if stopped is not None and stopped.is_set():   # stopped between the check and the start
                stop_gracefully(self.client, container_id)
            t0 = time.monotonic()
            timed_out = _wait(self.client, container_id, opts.timeout)
            duration_ms = int((time.monotonic() - t0) * 1000)
            drained = pump.join(_LOG_DRAIN_S)
        finally:
            pump.close()
        if not drained:
            drained = pump.join(2.0)
        dropped = pump.dropped
        if not drained or pump.error is not None:
            dropped = _fetch_logs(self.client, container_id, request)
        with mapped("inspecting the exited container"):
            state = api.inspect_container(container_id)["State"]
        return Outcome(int(state.get("ExitCode", -1)), timed_out, bool(state.get("OOMKilled")), duration_ms,
                       {"timeout_s": _seconds(opts.timeout)}, dropped)


def _seconds(value: float) -> int | float:
    return int(value) if value == int(value) else value


def workers(*, stores: Stores, jobs: int, **_: Any) -> Any:
    """Persistent workers for one batch (:class:`~theoryx.adapters.local.workers.WorkerPool`):
    at most ``jobs`` containers per image and resource class, started when first needed."""
    from theoryx.adapters.local.workers import WorkerPool

    return WorkerPool(stores.home, jobs)


def create(*, stores: Stores | None = None, build: bool = False, workers: Any = None, **_: Any) -> LocalAdapter:
    """Connect to the engine (:class:`DockerUnavailable` within about a second), remove
    containers left by dead runs, and return the adapter. Within a batch that has persistent
    workers, the batch's connection is reused (connected and swept once per batch)."""
    from theoryx.adapters.local.workers import WorkerPool

    if isinstance(workers, WorkerPool):
        return LocalAdapter(workers.connect(), stores, build)
    client = docker_client.connect()
    remove_leftovers(client)
    return LocalAdapter(client, stores, build)


__all__ = ["OPTIONS", "LocalAdapter", "Options", "create"]
