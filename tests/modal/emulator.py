"""An emulator of the part of Modal's SDK the modal adapter uses, on local Docker.

:meth:`Emulator.install` puts its classes in place of ``modal.App``, ``modal.Image``,
``modal.Secret``, ``modal.Volume`` and ``modal.Sandbox`` (the boundary looks them up at call time),
so :mod:`theoryx.adapters.modal.boundary` runs unchanged and the whole remote flow happens for
real: the processor's image is built from the staged context with the appended lines and the
empty entrypoint, the Sandbox is a container with the same idle command, mounts, CPU and memory
limits, network switch, tags and lifetime, and every ``exec`` is a ``docker exec`` whose stdout
and stderr stream back as they come.

It checks what it is sent against the real SDK: every method is declared with
:func:`conforms` to the real method it stands for, and every call first binds its arguments to
that method's signature (``inspect.signature(real).bind``), captured before the emulator is
installed; a keyword the installed ``modal`` does not have fails the test with ``TypeError``.
Objects it returns are the SDK's own where they are plain values (``modal.volume.FileEntry``)
and its errors are the SDK's exceptions (``modal.exception.*``).

What it does not emulate: Modal's image builder (Docker builds the same Dockerfile, with the
network disabled and the local base image), gVisor, GPUs (a GPU request is refused). Switches
choose the answers to questions Modal's docs leave open:

- ``run_as_root`` (False, the default, runs the image's ``USER``; True runs as root, as third
  parties report Sandboxes do);
- ``kill_ends_sandbox`` (False: a process SIGKILLed by the kernel's OOM killer just exits 137;
  True: the whole Sandbox ends under it, as a container-level memory kill would);
- ``inject_env`` (empty: Modal adds no variable to a Sandbox's processes; else these variables are
  in every process's environment, overriding the image's values of the same names, as Modal's own
  ``MODAL_*``, thread counts or a ``/pkg`` path would be);
- ``requires_python`` (None: a Sandbox's image needs no Python; ``"build"``: the image builder
  runs ``python -m pip`` on top of the image, as Modal's builders up to 2024.10 do, and a failed
  build raises what the SDK raises, ``ImageBuildError`` without the log; ``"start"``: a Sandbox
  whose image has no ``python`` on PATH ends as soon as it starts).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import modal
import modal.container_process
import modal.exception
import modal.io_streams
import modal.volume
import pytest

STREAM_TIMEOUT_S = 600

REAL: dict[str, Any] = {
    "App.lookup": modal.App.lookup,
    "Image.from_dockerfile": modal.Image.from_dockerfile,
    "Image.from_registry": modal.Image.from_registry,
    "Image.dockerfile_commands": modal.Image.dockerfile_commands,
    "Image.entrypoint": modal.Image.entrypoint,
    "Image.build": modal.Image.build,
    "Secret.from_dict": modal.Secret.from_dict,
    "Volume.from_name": modal.Volume.from_name,
    "Volume.read_only": modal.Volume.read_only,
    "Volume.listdir": modal.Volume.listdir,
    "Volume.batch_upload": modal.Volume.batch_upload,
    "Upload.put_file": modal.volume.AbstractVolumeUploadContextManager.put_file,
    "Sandbox.create": modal.Sandbox.create,
    "Sandbox.exec": modal.Sandbox.exec,
    "Sandbox.poll": modal.Sandbox.poll,
    "Sandbox.terminate": modal.Sandbox.terminate,
    "Sandbox.wait": modal.Sandbox.wait,
    "Sandbox.list": modal.Sandbox.list,
    "Sandbox.get_tags": modal.Sandbox.get_tags,
    "Process.wait": modal.container_process.ContainerProcess.wait,
    "Stream.__iter__": modal.io_streams.StreamReader.__iter__,
}
"""The real SDK methods the emulator stands for, captured at import (before any install)."""

_QUEUE_CHUNKS = 64


def conforms(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare that the decorated function stands for ``REAL[name]``: each call binds its
    arguments to the real signature first (``TypeError`` when they do not fit) and is logged in
    the current emulator's :attr:`Emulator.calls` with its bound arguments."""
    sig = inspect.signature(REAL[name])

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            emu = Emulator.current
            if emu is not None:
                with emu.lock:
                    emu.calls.append((name, dict(bound.arguments)))
            return fn(*args, **kwargs)

        wrapper.__conforms__ = name  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _defaults(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The call's arguments with the real signature's defaults filled in."""
    bound = inspect.signature(REAL[name]).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


class Emulator:
    """The emulated service: volumes under ``root``, sandboxes as containers of ``client``."""

    current: Emulator | None = None

    def __init__(self, root: Path, client: Any, *, run_as_root: bool = False, kill_ends_sandbox: bool = False,
                 inject_env: dict[str, str] | None = None, requires_python: str | None = None) -> None:
        self.root = root
        self.client = client
        self.run_as_root = run_as_root
        self.kill_ends_sandbox = kill_ends_sandbox
        self.inject_env = dict(inject_env or {})
        self.cut_outputs: int | None = None     # end the outputs tar's stdout quietly after so many bytes
        self.requires_python = requires_python
        self.lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploads: list[tuple[str, str, int]] = []       # (volume, path, size)
        self.sandboxes: list[Sandbox] = []
        self.builds = 0
        self._build_lock = threading.Lock()
        # exec streams wait as long as the process runs: the tests' client gives up on a read
        # after 5 s, which under load cut a stream short (and a cut stream is an error below)
        self.streams = docker.from_env(version=client.api.api_version, timeout=STREAM_TIMEOUT_S).api
        (root / "volumes").mkdir(parents=True, exist_ok=True)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Emulator:
        """Stand in for Modal for the test's duration (classes swapped, credentials check
        skipped: no token exists or is set, nothing talks to Modal)."""
        from theoryx.adapters.modal import adapter as modal_adapter
        from theoryx.adapters.modal import blobs, boundary

        for name, cls in (("App", App), ("Image", Image), ("Secret", Secret), ("Volume", Volume),
                          ("Sandbox", Sandbox)):
            monkeypatch.setattr(modal, name, cls)
        monkeypatch.setattr(boundary, "require_credentials", lambda: None)
        monkeypatch.setattr(modal_adapter, "LOCAL_ONLY_BASES", ())
        monkeypatch.setattr(modal_adapter, "_leftovers_checked", False)
        monkeypatch.setattr(Emulator, "current", self)
        boundary.forget()
        blobs.BlobVolume.forget()
        return self

    def called(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [args for n, args in self.calls if n == name]

    def close(self) -> None:
        """Remove every container still there."""
        for sb in list(self.sandboxes):
            sb._end("terminated")
        self.streams.close()


def _emu() -> Emulator:
    emu = Emulator.current
    if emu is None:
        raise RuntimeError("the Modal emulator is not installed")
    return emu


# -- App, Secret ---------------------------------------------------------------------------------


class App:
    def __init__(self, name: str) -> None:
        self.name = name
        self.app_id = "ap-emu-" + hashlib.sha1(name.encode()).hexdigest()[:12]

    @staticmethod
    @conforms("App.lookup")
    def lookup(*args: Any, **kwargs: Any) -> App:
        a = _defaults("App.lookup", *args, **kwargs)
        return App(a["name"])


class Secret:
    def __init__(self, values: dict[str, str | None]) -> None:
        self.values = values

    @staticmethod
    @conforms("Secret.from_dict")
    def from_dict(*args: Any, **kwargs: Any) -> Secret:
        return Secret(dict(_defaults("Secret.from_dict", *args, **kwargs)["env_dict"]))


# -- Image ---------------------------------------------------------------------------------------


class Image:
    """A recipe: a Dockerfile and its context (or a local image by name), lines appended, an
    entrypoint; built by Docker when a Sandbox first needs it."""

    def __init__(self, dockerfile: str | None, context_dir: str | None, build_args: dict[str, str],
                 registry: str | None, force_build: bool, lines: tuple[str, ...] = ()) -> None:
        self.dockerfile, self.context_dir, self.build_args = dockerfile, context_dir, build_args
        self.registry, self.force_build, self.lines = registry, force_build, lines
        self.object_id: str | None = None
        self.tag: str | None = None            # the local image, once built

    @staticmethod
    @conforms("Image.from_dockerfile")
    def from_dockerfile(*args: Any, **kwargs: Any) -> Image:
        a = _defaults("Image.from_dockerfile", *args, **kwargs)
        assert a["ignore"] == [], "the adapter stages the context itself: nothing to ignore"
        return Image(str(a["path"]), str(a["context_dir"]), dict(a["build_args"]), None, bool(a["force_build"]))

    @staticmethod
    @conforms("Image.from_registry")
    def from_registry(*args: Any, **kwargs: Any) -> Image:
        a = _defaults("Image.from_registry", *args, **kwargs)
        return Image(None, None, {}, a["tag"], bool(a["force_build"]))

    @conforms("Image.dockerfile_commands")
    def dockerfile_commands(self, *args: Any, **kwargs: Any) -> Image:
        a = _defaults("Image.dockerfile_commands", self, *args, **kwargs)
        lines = tuple(str(c) for c in a["dockerfile_commands"])
        return Image(self.dockerfile, self.context_dir, self.build_args, self.registry, self.force_build,
                     self.lines + lines)

    @conforms("Image.entrypoint")
    def entrypoint(self, *args: Any, **kwargs: Any) -> Image:
        a = _defaults("Image.entrypoint", self, *args, **kwargs)
        return Image(self.dockerfile, self.context_dir, self.build_args, self.registry, self.force_build,
                     (*self.lines, f"ENTRYPOINT {json.dumps(list(a['entrypoint_commands']))}"))

    @conforms("Image.build")
    def build(self, *args: Any, **kwargs: Any) -> Image:
        """Modal's eager build: the image is built now, and a Sandbox created with it later does
        not build it again."""
        _defaults("Image.build", self, *args, **kwargs)
        self.local_tag(_emu())
        return self

    def local_tag(self, emu: Emulator) -> str:
        """The local image's tag, built when missing (or when ``force_build``), once per object."""
        if self.tag is None:
            self.tag = self._build(emu)
        return self.tag

    def _build(self, emu: Emulator) -> str:
        if self.dockerfile is None:
            text = f"FROM {self.registry}\n"
            context = emu.root / "registry-context"
            context.mkdir(exist_ok=True)
        else:
            text = Path(self.dockerfile).read_text()
            context = Path(self.context_dir or ".")
        lines = self.lines
        if emu.requires_python == "build":      # what Modal's builders up to 2024.10 add, offline
            lines = (*lines, "RUN python -m pip --version")
        text = text.rstrip("\n") + "\n" + "".join(line + "\n" for line in lines)
        h = hashlib.sha256(text.encode() + json.dumps(self.build_args, sort_keys=True).encode())
        for path in sorted(p for p in context.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes())
        tag = f"theoryx-emulator/image:{h.hexdigest()[:16]}"
        with emu._build_lock:
            if not self.force_build:
                try:
                    emu.client.images.get(tag)
                    self.object_id = "im-" + tag[-16:]
                    return tag
                except Exception:
                    pass
            name = ".theoryx-emulator.Dockerfile"
            (context / name).write_text(text)
            try:
                emu.client.images.build(path=str(context), dockerfile=name, tag=tag, buildargs=self.build_args,
                                        network_mode="none", pull=False, rm=True, forcerm=True)
            except Exception as exc:    # what the SDK raises for a failed build: no log, an id
                image_id = "im-emu-" + tag[-16:]
                raise modal.exception.ImageBuildError(
                    f"Image build for {image_id} failed.\nView the build logs:\n  modal image logs {image_id}",
                    image_id) from exc
            finally:
                (context / name).unlink(missing_ok=True)
            emu.builds += 1
        self.object_id = "im-" + tag[-16:]
        return tag


# -- Volume --------------------------------------------------------------------------------------


class Volume:
    def __init__(self, name: str, read_only: bool = False) -> None:
        self.name = name
        self.is_read_only = read_only
        self.dir = _emu().root / "volumes" / name

    @staticmethod
    @conforms("Volume.from_name")
    def from_name(*args: Any, **kwargs: Any) -> Volume:
        a = _defaults("Volume.from_name", *args, **kwargs)
        vol = Volume(a["name"])
        if not vol.dir.exists():
            if not a["create_if_missing"]:
                raise modal.exception.NotFoundError(f"Volume {a['name']!r} not found")
            vol.dir.mkdir(parents=True)
        return vol

    @conforms("Volume.read_only")
    def read_only(self) -> Volume:
        return Volume(self.name, read_only=True)

    @conforms("Volume.listdir")
    def listdir(self, *args: Any, **kwargs: Any) -> list[Any]:
        a = _defaults("Volume.listdir", self, *args, **kwargs)
        rel = str(a["path"]).strip("/")
        target = self.dir / rel if rel else self.dir
        if not target.exists():
            raise modal.exception.NotFoundError(f"No such file or directory: {a['path']}")
        entries = [target] if target.is_file() else sorted(target.rglob("*") if a["recursive"] else target.iterdir())
        out = []
        for p in entries:
            st = p.lstat()
            kind = (modal.volume.FileEntryType.FILE if p.is_file() else modal.volume.FileEntryType.DIRECTORY)
            out.append(modal.volume.FileEntry(path=str(p.relative_to(self.dir)), type=kind,
                                              mtime=int(st.st_mtime), size=st.st_size))
        return out

    @contextmanager
    def _batch(self, force: bool) -> Iterator[Upload]:
        if self.is_read_only:
            raise modal.exception.InvalidError("Read-only Volume can not be written to")
        batch = Upload()
        yield batch
        emu = _emu()
        for local, remote in batch.files:      # committed together, each file atomically
            dest = self.dir / remote.strip("/")
            if dest.exists() and not force:
                raise modal.exception.AlreadyExistsError(f"{remote} already exists")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            shutil.copyfile(local, tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
            with emu.lock:
                emu.uploads.append((self.name, remote, dest.stat().st_size))

    @conforms("Volume.batch_upload")
    def batch_upload(self, *args: Any, **kwargs: Any) -> Any:
        a = _defaults("Volume.batch_upload", self, *args, **kwargs)
        return self._batch(bool(a["force"]))


class Upload:
    def __init__(self) -> None:
        self.files: list[tuple[Path, str]] = []

    @conforms("Upload.put_file")
    def put_file(self, *args: Any, **kwargs: Any) -> None:
        a = _defaults("Upload.put_file", self, *args, **kwargs)
        self.files.append((Path(a["local_file"]), str(a["remote_path"])))


# -- Sandbox and processes -----------------------------------------------------------------------


class Stream:
    """One stream of an exec'd process: chunks as they come, through a bounded queue. When the
    engine's stream broke while the Sandbox still ran, iterating ends with the SDK's
    ``ConnectionError``, as a dropped connection to Modal would, never as a quiet end."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self.broken: BaseException | None = None

    @conforms("Stream.__iter__")
    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.queue.get()
            if chunk is None:
                if self.broken is not None:
                    raise modal.exception.ConnectionError(f"the emulated stream broke: {self.broken!r}")
                return
            yield chunk

    def put(self, chunk: bytes | None) -> bool:
        while True:
            if self.process.sandbox.ended is not None and chunk is not None:
                return False
            try:
                self.queue.put(chunk, timeout=0.2)
                return True
            except queue.Full:
                continue


class Process:
    def __init__(self, sandbox: Sandbox, argv: list[str], env: dict[str, str], workdir: str | None,
                 timeout: int | None) -> None:
        self.sandbox = sandbox
        api = sandbox.emu.client.api
        user = "0" if sandbox.emu.run_as_root else ""
        self.exec_id = api.exec_create(sandbox.container_id, argv, stdout=True, stderr=True, environment=env,
                                       workdir=workdir, user=user)["Id"]
        frames = sandbox.emu.streams.exec_start(self.exec_id, stream=True, demux=True)
        self.stdout, self.stderr = Stream(self), Stream(self)
        self.cut = sandbox.emu.cut_outputs if argv[3:4] == ["theoryx-outputs"] else None
        self.deadline_passed = False
        self._pump = threading.Thread(target=self._run, args=(frames,), daemon=True)
        self._pump.start()
        self._timer = threading.Timer(timeout, self._deadline) if timeout else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _run(self, frames: Any) -> None:
        try:
            for out, err in frames:
                if out and self.cut is not None:    # a lost tail: the stream just ends early
                    out = out[:max(self.cut, 0)]
                    self.cut -= len(out)
                if out and not self.stdout.put(out):
                    break
                if self.cut == 0:
                    self.stdout.put(None)
                    self.cut = -1
                if err and not self.stderr.put(err):
                    break
        except Exception as exc:
            if self.sandbox.ended is None:      # else the container went away under the stream
                self.stdout.broken = self.stderr.broken = exc
        finally:
            for s in (self.stdout, self.stderr) if self.cut != -1 else (self.stderr,):
                s.put(None)

    def _deadline(self) -> None:
        """Modal's exec deadline: the process is killed, ``wait`` reports -1."""
        self.deadline_passed = True
        try:
            pid = self.sandbox.emu.client.api.exec_inspect(self.exec_id).get("Pid")
        except docker.errors.NotFound:     # the exec (or its Sandbox) is gone already
            return
        if pid:
            with_ignored = (ProcessLookupError, PermissionError)
            try:
                os.kill(int(pid), signal.SIGKILL)
            except with_ignored:
                pass

    @conforms("Process.wait")
    def wait(self) -> int:
        while self._pump.is_alive():
            self._pump.join(0.2)
            if self.sandbox.ended is not None:
                break
        if self._timer is not None:
            self._timer.cancel()
        if self.sandbox.ended is not None:
            raise modal.exception.SandboxTerminatedError("the Sandbox ended while the process ran")
        if self.deadline_passed:
            return -1
        for _ in range(50):     # the exit code lands just after the stream ends
            info = self.sandbox.emu.client.api.exec_inspect(self.exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                if int(info["ExitCode"]) == 137 and self.sandbox.emu.kill_ends_sandbox:
                    # the other reading of a memory kill: Modal ends the whole Sandbox
                    self.sandbox._end("terminated")
                    raise modal.exception.SandboxTerminatedError("the Sandbox ended while the process ran")
                return int(info["ExitCode"])
            time.sleep(0.05)
        raise modal.exception.ExecutionError("the emulated exec never reported an exit code")


class Sandbox:
    def __init__(self, emu: Emulator, container_id: str, tags: dict[str, str], args: dict[str, Any]) -> None:
        self.emu, self.container_id, self.tags, self.args = emu, container_id, tags, args
        self.object_id = "sb-emu-" + container_id[:12]
        self.ended: str | None = None          # "terminated" | "timeout" | "exited"
        self._exit: int | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(float(args["timeout"]), self._end, args=("timeout",))
        self._timer.daemon = True
        self._timer.start()

    @staticmethod
    @conforms("Sandbox.create")
    def create(*args: Any, **kwargs: Any) -> Sandbox:
        emu = _emu()
        a = _defaults("Sandbox.create", *args, **kwargs)
        if a["gpu"] is not None:
            raise modal.exception.InvalidError("the emulator has no GPUs")
        image: Image = a["image"]
        tag = image.local_tag(emu)
        cpu, memory = a["cpu"], a["memory"]
        cpu_limit = cpu[1] if isinstance(cpu, tuple) else None
        mem_limit = memory[1] if isinstance(memory, tuple) else None
        mounts = [{"Type": "bind", "Source": str(vol.dir), "Target": str(path), "ReadOnly": vol.is_read_only}
                  for path, vol in a["volumes"].items()]
        api = emu.client.api
        host_config = api.create_host_config(
            mounts=mounts, network_mode="none" if a["block_network"] else "bridge",
            mem_limit=f"{mem_limit}m" if mem_limit else None, memswap_limit=f"{mem_limit}m" if mem_limit else None,
            nano_cpus=int(cpu_limit * 1e9) if cpu_limit else None)
        env = {**emu.inject_env, **(a["env"] or {})}
        for s in a["secrets"] or ():
            env.update({k: v for k, v in s.values.items() if v is not None})
        container = api.create_container(
            image=tag, command=list(a["args"]), user="0" if emu.run_as_root else None, working_dir=a["workdir"],
            environment=env, labels=dict(a["tags"] or {}), host_config=host_config, detach=True)
        api.start(container["Id"])
        sb = Sandbox(emu, container["Id"], dict(a["tags"] or {}), a)
        with emu.lock:
            emu.sandboxes.append(sb)
        if emu.requires_python == "start" and not sb._has_python():
            api.kill(container["Id"])
            api.wait(container["Id"], timeout=30)
            sb._end("exited")
        return sb

    def _has_python(self) -> bool:
        api = self.emu.client.api
        probe = api.exec_create(self.container_id, ["/bin/sh", "-c", "command -v python"])["Id"]
        api.exec_start(probe)
        return api.exec_inspect(probe).get("ExitCode") == 0

    def _end(self, why: str) -> None:
        """End the Sandbox once; a second caller waits until the first has removed it."""
        with self._lock:
            if self.ended is not None:
                return
            self.ended = why
            self._timer.cancel()
            api = self.emu.client.api
            try:
                self._exit = int(api.inspect_container(self.container_id)["State"].get("ExitCode") or 0)
            except Exception:
                self._exit = None
            try:
                api.remove_container(self.container_id, force=True)
            except Exception:
                pass
            with self.emu.lock:
                if self in self.emu.sandboxes:
                    self.emu.sandboxes.remove(self)

    @property
    def returncode(self) -> int | None:
        if self.ended == "timeout":
            return 124
        if self.ended == "terminated":
            return 137
        return self._exit if self.ended == "exited" else None

    @conforms("Sandbox.exec")
    def exec(self, *args: Any, **kwargs: Any) -> Process:
        a = _defaults("Sandbox.exec", self, *args, **kwargs)
        assert a["text"] is False, "the adapter reads every stream as bytes"
        if self.ended is not None:
            raise modal.exception.SandboxTerminatedError("the Sandbox has ended")
        env = {k: v for k, v in (a["env"] or {}).items() if v is not None}
        for s in a["secrets"] or ():
            env.update({k: v for k, v in s.values.items() if v is not None})
        return Process(self, list(a["args"]), env, a["workdir"], a["timeout"])

    @conforms("Sandbox.poll")
    def poll(self) -> int | None:
        if self.ended is None:
            try:
                state = self.emu.client.api.inspect_container(self.container_id)["State"]
            except Exception:
                return self.returncode
            if not state.get("Running"):
                self._end("exited")
        return self.returncode

    @conforms("Sandbox.terminate")
    def terminate(self, *args: Any, **kwargs: Any) -> int | None:
        a = _defaults("Sandbox.terminate", self, *args, **kwargs)
        self._end("terminated")
        return self.returncode if a["wait"] else None

    @conforms("Sandbox.wait")
    def wait(self, *args: Any, **kwargs: Any) -> None:
        a = _defaults("Sandbox.wait", self, *args, **kwargs)
        while self.poll() is None:
            time.sleep(0.1)
        if self.ended == "timeout":
            raise modal.exception.SandboxTimeoutError()
        if self.ended == "terminated" and a["raise_on_termination"]:
            raise modal.exception.SandboxTerminatedError()

    @conforms("Sandbox.get_tags")
    def get_tags(self) -> dict[str, str]:
        return dict(self.tags)

    @staticmethod
    @conforms("Sandbox.list")
    def list(*args: Any, **kwargs: Any) -> Iterator[Sandbox]:
        a = _defaults("Sandbox.list", *args, **kwargs)
        want = dict(a["tags"] or {})
        emu = _emu()
        with emu.lock:
            found = [sb for sb in emu.sandboxes if sb.ended is None and want.items() <= sb.tags.items()]
        return iter(found)


def emulated_classes() -> list[type]:
    return [App, Image, Secret, Volume, Upload, Sandbox, Process, Stream]
