"""The ``modal`` adapter: the processor's image on Modal, through a thin boundary.

Every call into the Modal client lives in :mod:`theoryx.adapters.modal.boundary`; this module prepares
one :class:`~theoryx.adapters.modal.boundary.Call` and turns the response into the workspace the executor
reads. Inside the container :mod:`theoryx.adapters.modal.runner` recreates the processor contract
(BUILD.md, "The processor contract") and runs the spec's command; so the same processor source runs unchanged under
``local`` and ``modal``, and both share memo keys (environment class ``container``, same image
identity: the same build context and build args are sent to Modal's builder).

- image: a Dockerfile spec is built by Modal from a context staged in the workspace: exactly the
  files :func:`theoryx.spec.context.context_manifest` hashes, plus ``vendor/`` (the host-installed
  ``requirements.txt``, as for ``local``), with :func:`theoryx.spec.context.build_args`. A pinned
  ``image.ref`` is pulled by Modal from its registry. ``--build`` forces a rebuild on Modal.
  A ``BASE_IMAGE`` that only exists locally (``theoryx/...``) is refused before anything is sent.
- command: the spec's ``command`` (after the Dockerfile's exec-form ``ENTRYPOINT``, as Docker
  would), else the Dockerfile's ``CMD``; the working directory is the Dockerfile's ``WORKDIR``.
- inputs: the referenced attachments and ``inputs.json`` travel in the payload; secret values
  travel only as a ``modal.Secret`` (never in the payload, the memo key or a log: logs and
  streamed chunks are scrubbed).
- resources: ``runtime.cpu``, ``memory`` (MiB, also the hard limit), ``gpu`` (``"A10G"``,
  ``"a10g:2"``; a bare count ``n`` means ``any:n``), ``network: false`` blocks the network; the
  wall-clock timeout (``runtime.timeout`` or the ``timeout`` option) is enforced by the runner,
  and Modal's own function timeout has a margin over it. Either kill is ``timed_out``; an OOM
  kill the container's cgroup accounts for (or that Modal's message names) is ``oom_killed``.
- outputs: the runner sends back the tree left under the write prefix without following links;
  it is recreated in ``workspace.outputs`` as it was (symlinks as symlinks, set-id bits, extra
  hard links, sizes of over-cap files as sparse files; devices become FIFOs) so that ingestion
  accepts and rejects exactly what it does for ``local``.
- streaming: with ``--stream`` a boundary that offers ``call_stream`` (the real one does: the
  runner is then a generator function) forwards stdout/stderr chunks as the processor writes
  them; with a boundary offering only ``call``, the logs are forwarded once the call returns.
- billing: ``bills_compute`` is True; the Outcome's ``meta`` says ``compute_seconds`` (the wall
  time of the remote call, which includes container start-up: Modal bills the container's life;
  capped at the timeout + ``billing_margin_s``, the most Modal's function and start-up timeouts
  let it bill, which is what a plan reserves), ``cpu``, ``memory_mib`` and ``gpu``.

Credentials are checked before ``modal`` is even imported (:class:`ModalCredentialsMissing`,
within milliseconds). Tests replace :data:`BOUNDARY_FACTORY` with an offline fake; it is not an
adapter option, since those are user-facing.

- logs: written through the run's log captures (:class:`~theoryx.adapters.base.Captures`),
  bounded by ``limits.log_bytes`` on the host and, already, in the container (the runner keeps
  the same head and tail and says where it cut: ``log_cuts``), so a processor's output never
  travels or sits in memory whole.

Adapter options (:data:`OPTIONS`; ``--adapter-opts-json``, never in the memo key): ``timeout``
(seconds, > 0, at most :data:`MAX_TIMEOUT_S`: Modal's 24-hour function limit less the margin).
No option relaxes the sandbox: network, CPU, memory and GPU come from the spec only.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theoryx.adapters.base import (
    CONTAINER_INPUTS_DIR,
    STREAMS,
    Captures,
    ExecRequest,
    Option,
    OptionSchema,
    Outcome,
    Workspace,
    timeout_value,
)
from theoryx.adapters.logs import Scrubber as Scrubber  # re-exported: tests reach it here
from theoryx.adapters.modal.boundary import Boundary, Call, ImageRecipe
from theoryx.core import notices
from theoryx.errors import ImageNotFound, ModalError, UsageError
from theoryx.spec.context import build_args, context_manifest, platform_name
from theoryx.spec.model import ProcessorSpec
from theoryx.store.handle import Stores

TIMEOUT_MARGIN_S = 120        # materialising inputs and collecting outputs, on top of the processor's
STARTUP_TIMEOUT_S = 300       # pulling the image and starting the container
MAX_TIMEOUT_S = 24 * 3600 - TIMEOUT_MARGIN_S   # Modal's function timeout is at most 24 hours
OPTIONS = OptionSchema("modal", (
    Option("timeout", "number", "the wall-clock timeout in seconds", positive=True, maximum=MAX_TIMEOUT_S),
))
STAGING_DIR = "modal-context"
LINKS_DIR = "modal-links"


def _real_boundary() -> Boundary:
    """The real edge, after the local credentials check (never imports modal itself)."""
    from theoryx.adapters.modal import boundary as modal_boundary

    modal_boundary.require_credentials()
    return modal_boundary


BOUNDARY_FACTORY: Callable[[], Boundary] = _real_boundary


# -- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The validated adapter options of one run."""

    timeout: float

    @classmethod
    def parse(cls, spec: ProcessorSpec, raw: Mapping[str, Any]) -> Options:
        """:class:`AdapterOptionsError` for unknown keys or bad values; defaults from the spec."""
        return cls(timeout_value(spec, OPTIONS.parse(raw, spec)))


# -- the image ---------------------------------------------------------------------------------


def app_name(spec: ProcessorSpec) -> str:
    """The Modal app: the spec's ``adapter.modal.stub_name``, else ``theoryx-<ns>-<name>``."""
    raw = spec.modal_stub or f"theoryx-{spec.ref.ns}-{spec.ref.name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-")[:64] or "theoryx"


def modal_gpu(gpu: str | None) -> str | None:
    """``runtime.gpu`` in Modal's form: a bare count ``n`` is ``any:n``."""
    if gpu is None:
        return None
    return f"any:{gpu}" if gpu.isdigit() else gpu


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def stage_context(spec: ProcessorSpec, dest: Path, vendor_root: Path) -> None:
    """Put ``spec``'s build context in ``dest``: the files its image identity hashes (links kept
    as links) and ``vendor/`` (empty without a ``requirements.txt``; else hard links into
    theoryx's vendor cache, whose entries are never modified)."""
    from theoryx.adapters.local import images

    folder = spec.folder
    dest.mkdir(parents=True)
    for rel in context_manifest(folder).files:
        src, out = folder / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), out)
        else:                   # copied: the registry's sources are the user's files
            shutil.copy2(src, out)
    dockerfile = spec.dockerfile_path
    if dockerfile is not None and not (dest / dockerfile.name).exists():
        shutil.copy2(dockerfile, dest / dockerfile.name)
    if (folder / images.REQUIREMENTS).is_file() and platform_name() != "linux/amd64":
        raise ModalError(f"processor {spec.ref} vendors {images.REQUIREMENTS}, whose wheels are chosen for "
                         f"this host's platform ({platform_name()}); Modal runs linux/amd64: run it from an "
                         "amd64 host, or use adapter='local'", option="adapter")
    vendor = images.ensure_vendor(folder, vendor_root, notices.progress)
    if vendor is None:
        (dest / images.VENDOR_DIR).mkdir()
    else:
        shutil.copytree(vendor, dest / images.VENDOR_DIR, symlinks=True, copy_function=_link_or_copy)


def image_recipe(spec: ProcessorSpec, staging: Path, vendor_root: Path, force: bool) -> ImageRecipe:
    """How Modal gets ``spec``'s image; :class:`ImageNotFound` for a local-only base image."""
    if spec.image.ref is not None:
        return ImageRecipe(registry_ref=spec.image.ref, force_build=force)
    args = build_args(spec)
    base = args.get("BASE_IMAGE", "")
    if base.startswith("theoryx/"):
        raise ImageNotFound(
            f"BASE_IMAGE {base} (THEORYX_BASE_IMAGE) is a local image that Modal's builder cannot pull; "
            "unset THEORYX_BASE_IMAGE or set it to an image in a registry Modal can reach "
            "(it is part of the image identity, so results are then keyed apart from local ones)")
    stage_context(spec, staging, vendor_root)
    dockerfile = Path(spec.image.dockerfile or "Dockerfile").name
    return ImageRecipe(dockerfile=str(staging / dockerfile), context_dir=str(staging), build_args=args,
                       force_build=force)


# -- the command -------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` of a Dockerfile (one parser: :func:`images.dockerfile_instructions`)."""
    from theoryx.adapters.local.images import dockerfile_instructions

    out = []
    for ins in dockerfile_instructions(text):
        keyword, _, rest = ins.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _exec_form(arg: str) -> list[str]:
    try:
        value = json.loads(arg)
    except ValueError:
        value = None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return ["/bin/sh", "-c", arg]


def command_and_cwd(spec: ProcessorSpec) -> tuple[list[str], str]:
    """What to run and where, as Docker would run the image's last stage."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    cwd = "/"
    dockerfile = spec.dockerfile_path
    if dockerfile is not None:
        for keyword, arg in _instructions(dockerfile.read_text()):
            if keyword == "FROM":
                entrypoint, cmd, cwd = [], [], "/"
            elif keyword == "ENTRYPOINT":
                entrypoint, cmd = _exec_form(arg), []
            elif keyword == "CMD":
                cmd = _exec_form(arg)
            elif keyword == "WORKDIR" and "$" not in arg:
                cwd = os.path.normpath(os.path.join(cwd, arg.strip("\"'")))
    command = [*entrypoint, *(list(spec.command) if spec.command is not None else cmd)]
    if not command:
        raise UsageError(f"processor {spec.ref} has no command: set `command` in its spec "
                         "(the modal adapter cannot read a prebuilt image's CMD)")
    return command, cwd


# -- the payload -------------------------------------------------------------------------------


def attachments(ws: Workspace) -> dict[str, bytes]:
    """``{world path: bytes}`` of the attachments the executor placed in ``ws.inputs``."""
    out: dict[str, bytes] = {}
    if not ws.inputs.is_dir():
        return out
    for cid_dir in sorted(ws.inputs.iterdir()):
        for f in sorted(cid_dir.iterdir()):
            out[f"{CONTAINER_INPUTS_DIR}/{cid_dir.name}/{f.name}"] = f.read_bytes()
    return out


def payload(request: ExecRequest, command: list[str], cwd: str, timeout: float) -> dict[str, Any]:
    """The runner's payload (see :mod:`theoryx.adapters.modal.runner`); no secret value is in it."""
    spec = request.spec
    return {
        "format": 1, "command": command, "cwd": cwd,
        "env": {"HOME": "/tmp", **request.env()}, "secret_names": sorted(spec.secrets),
        "inputs_json": request.workspace.inputs_json.read_text(),
        "attachments": attachments(request.workspace),
        "write_prefix": request.write_prefix, "timeout": timeout, "limits": spec.limits.to_dict(),
        "log_bytes": spec.limits.log_bytes,
    }


# -- the response ------------------------------------------------------------------------------


def _entry_path(top: Path, rel: Any) -> Path:
    """``top/rel`` with its parent directories made; :class:`ModalError` for a path that is
    not clean or that would pass through a link or a file."""
    parts = rel.split("/") if isinstance(rel, str) else [""]
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise ModalError(f"malformed response from the Modal runner: output path {rel!r}")
    current = top
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise ModalError(f"malformed response from the Modal runner: {rel!r} passes through a non-directory")
        current.mkdir(exist_ok=True)
    return current / parts[-1]


def _write_file(path: Path, entry: Mapping[str, Any], links: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        data = entry.get("data")
        if isinstance(data, bytes):
            _write_all(fd, data)
        else:
            os.ftruncate(fd, int(entry.get("size") or 0))     # sparse: only its size matters
        os.fchmod(fd, int(entry.get("mode", 0o644)) & 0o7777)
    finally:
        os.close(fd)
    if int(entry.get("nlink") or 1) > 1:
        links.mkdir(exist_ok=True)
        os.link(path, links / str(len(os.listdir(links))))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def recreate_outputs(entries: Iterable[Mapping[str, Any]], ws: Workspace) -> None:
    """Rebuild the processor's output tree in ``ws.outputs``; links and special files last, so
    that nothing is ever written through them."""
    later: list[tuple[Path, Mapping[str, Any]]] = []
    try:
        for entry in entries:
            path = _entry_path(ws.outputs, entry.get("path"))
            kind = entry.get("kind")
            if kind == "dir":
                path.mkdir(exist_ok=True)
            elif kind == "file":
                _write_file(path, entry, ws.root / LINKS_DIR)
            else:
                later.append((path, entry))
        for path, entry in later:
            if entry.get("kind") == "symlink":
                os.symlink(str(entry.get("target") or ""), path)
            elif entry.get("kind") == "socket":
                os.mknod(path, stat.S_IFSOCK | 0o600)
            else:                     # FIFOs, and devices (never recreated as devices on the host)
                os.mkfifo(path, 0o600)
    except OSError as exc:
        raise ModalError(f"could not recreate the outputs sent back by Modal: {exc}") from exc


def _check(response: Any) -> dict[str, Any]:
    if not isinstance(response, dict) or response.get("format") != 1:
        raise ModalError("malformed response from the Modal runner (an incompatible theoryx version?)")
    if response.get("error"):
        lines = str(response["error"]).strip().splitlines()[-15:]
        raise ModalError("the theoryx runner failed inside the Modal container:\n" + "\n".join(lines))
    return response


# -- the adapter -------------------------------------------------------------------------------


class ModalAdapter:
    """Runs processors on Modal through ``boundary``; see the module docstring."""

    name = "modal"
    env_class = "container"
    bills_compute = True
    billing_margin_s = TIMEOUT_MARGIN_S + STARTUP_TIMEOUT_S   # the most Modal bills beyond the timeout

    def __init__(self, boundary: Boundary, stores: Stores | None = None, build: bool = False) -> None:
        self.boundary = boundary
        self.vendor_root = stores.home.vendor if stores is not None else Path.home() / ".cache/theoryx/vendor-v1"
        self.build = build

    def execute(self, request: ExecRequest) -> Outcome:
        spec, ws = request.spec, request.workspace
        opts = Options.parse(spec, request.options)
        command, cwd = command_and_cwd(spec)
        recipe = image_recipe(spec, ws.root / STAGING_DIR, self.vendor_root, self.build)
        self.build = False
        rt = spec.runtime
        call = Call(
            app_name=app_name(spec), image=recipe, cpu=rt.cpu, memory_mib=rt.memory, gpu=modal_gpu(rt.gpu),
            timeout_s=math.ceil(opts.timeout) + TIMEOUT_MARGIN_S, block_network=not rt.network,
            payload=payload(request, command, cwd, opts.timeout), startup_timeout_s=STARTUP_TIMEOUT_S,
            secrets=dict(request.secrets),
        )
        notices.progress(f"theoryx: running {spec.ref} on Modal (app {call.app_name}; "
                "the first run of an image builds it there)")
        t0 = time.monotonic()
        captures = Captures(request)
        try:
            response = _check(self._call(call, request, captures))
            # what Modal bills is the container's life, which its timeouts bound: the wall time of
            # the call (queueing and start-up included) capped there, so settling never exceeds
            # the reservation (timeout + billing_margin_s)
            compute_s = min(time.monotonic() - t0, opts.timeout + self.billing_margin_s)
            self._logs(captures, response)
        finally:
            dropped = captures.close()
        if isinstance(response.get("result"), bytes):
            ws.result.write_bytes(response["result"])
        recreate_outputs(response.get("outputs") or [], ws)
        meta = {
            "compute_seconds": round(compute_s, 3), "cpu": rt.cpu, "memory_mib": rt.memory,
            "gpu": call.gpu, "app": call.app_name, "timeout_s": _seconds(opts.timeout),
        }
        return Outcome(int(response["exit_code"]), bool(response.get("timed_out")),
                       bool(response.get("oom_killed")), int(response.get("duration_ms") or 0), meta,
                       dropped)

    def _call(self, call: Call, request: ExecRequest, captures: Captures) -> Any:
        """The boundary's response; streamed chunks go through the captures (bounded, and
        forwarded scrubbed) as they come."""
        stream = getattr(self.boundary, "call_stream", None)
        if request.stream is None or stream is None:
            return self.boundary.call(call)
        response: Any = None
        for name, value in stream(call):
            if name == "done":
                response = value
            elif name in STREAMS and isinstance(value, bytes):
                captures.write(name, value)
        return response

    @staticmethod
    def _logs(captures: Captures, response: Mapping[str, Any]) -> None:
        """Write the logs the response carries (all of them unless they were streamed; a note
        when Modal killed the function) through the captures, which forward them when
        streaming was asked. Where the runner's capture dropped bytes (``log_cuts``), the same
        cut is redone here, so the stored log gets the marker and the record the count."""
        cuts = response.get("log_cuts")
        cuts = cuts if isinstance(cuts, Mapping) else {}
        for name in STREAMS:
            data = response.get(name)
            if not isinstance(data, bytes) or not data:
                continue
            cut = cuts.get(name)
            if (isinstance(cut, list | tuple) and len(cut) == 2 and all(type(v) is int for v in cut)
                    and 0 <= cut[0] <= len(data) and cut[1] >= 0):
                captures.write(name, data[:cut[0]])
                captures.skip(name, cut[1])
                captures.write(name, data[cut[0]:])
            else:
                captures.write(name, data)


def _seconds(value: float) -> int | float:
    return int(value) if value == int(value) else value


def create(*, stores: Stores | None = None, build: bool = False, **_: Any) -> ModalAdapter:
    """The adapter with the boundary of :data:`BOUNDARY_FACTORY` (the real one checks the
    credentials first: :class:`ModalCredentialsMissing`, without contacting Modal)."""
    return ModalAdapter(BOUNDARY_FACTORY(), stores, build)


__all__ = ["BOUNDARY_FACTORY", "ModalAdapter", "Options", "create"]
