"""The ``modal`` adapter: the processor's own command in a Modal Sandbox.

Every call into the Modal client is in :mod:`theoryx.adapters.modal.boundary`; this module decides
what to ask for, :mod:`theoryx.adapters.modal.blobs` puts the inputs on a content-addressed Volume
and :mod:`theoryx.adapters.modal.sandbox` runs one execution. The processor contract (BUILD.md,
"The processor contract") is the same as under ``local``; what Modal cannot make equivalent is
why ``modal`` results are keyed apart (environment class ``modal``, see below).

- **image**: a Dockerfile spec is built by Modal from a context staged in the workspace: exactly
  the files :func:`theoryx.spec.context.context_manifest` hashes, plus ``vendor/`` (the
  host-installed ``requirements.txt``, as for ``local``; a placeholder file when there is none,
  since Modal uploads only the files ``COPY`` sources match and an empty ``vendor/`` matches
  none), with :func:`theoryx.spec.context.build_args`. Refused before anything is sent: a context
  holding symbolic links (Modal's builder follows them, so the image would not be the one hashed),
  ``ADD`` of local files (Modal does not upload ``ADD`` sources), a ``BASE_IMAGE`` that only
  exists locally (``theoryx/...``). A last build step records the image's own environment
  (:func:`record_env_command`), which the processor's exec restores into an otherwise empty one.
  When the last stage sets ``USER``, that step runs as root between ``USER root``, ``RUN mkdir -p
  /artifacts /theoryx && chmod 1777 ...`` and ``USER <it>``, so that the Sandbox can be prepared
  whether Modal honours ``USER`` or not (its docs do not say). The image's entrypoint is emptied. A
  pinned ``image.ref`` is pulled by Modal (with the recording step). ``--build`` forces a rebuild.
- **command**: the spec's ``command`` (after the Dockerfile's exec-form ``ENTRYPOINT``, as Docker
  would), else the Dockerfile's ``CMD``; in the Dockerfile's ``WORKDIR``.
- **inputs**: the attachments and ``inputs.json`` are blobs on the Volume (uploaded when missing,
  one batch per run, never twice by concurrent runs of one process), linked into place read-only.
- **resources**: ``cpu=(c, c)`` and ``memory=(m, m)``: request = limit (a plain number would only
  be a request, billed as max(request, usage)); ``gpu`` one of Modal's documented types with a
  count it supports (:data:`GPU_TYPES`; anything else is :class:`ModalGpuUnsupported` before
  anything is written); ``block_network`` unless ``runtime.network``; the Sandbox's lifetime is
  the processor's timeout plus :data:`~theoryx.adapters.modal.sandbox.SANDBOX_MARGIN_S`.
- **tags**: ``theoryx.managed=1``, the owner process (:func:`owner_tag`: digests of ``local``'s
  host/boot id label, the pid and its start time, in the characters Modal allows in tags), the
  execution id and the ref. Sandboxes whose owner process is gone are terminated when the next
  modal adapter of this host is created (once per process).
- **billing**: ``bills_compute``; ``compute_rates = "sandbox"`` (Modal's Sandbox CPU and memory
  rates, :mod:`theoryx.budget.pricing`); the Outcome's ``meta`` says ``compute_seconds`` (the
  Sandbox's measured lifetime), ``cpu``, ``memory_mib``, ``gpu``, ``image_build_s`` and ``billing``
  (the basis, :data:`~theoryx.adapters.modal.sandbox.BILLING`, with the milliseconds measured; the
  plan's ``settle`` event records it): the image build is measured apart and not charged. A plan
  reserves the worst case: (timeout + :attr:`ModalAdapter.billing_margin_s`) x rates.

**Environment class ``modal``**: a Modal run is not the run ``local`` makes. Inside the Sandbox
the root filesystem is writable, there is no tmpfs size, pids limit, dropped capabilities or
no-new-privileges, the user may be root (Modal's docs do not say whether ``USER`` is honoured), the
inputs are links into a read-only Volume (the directories holding them lose their write bits,
which root ignores), and the processor's environment lacks what Docker adds (``HOSTNAME``) while
keeping nothing Modal adds. So ``modal`` results never answer ``local`` runs nor the reverse
(:data:`theoryx.adapters._ENV_CLASS`).

Credentials are checked before ``modal`` is even imported (:class:`ModalCredentialsMissing`, within
milliseconds). Adapter options (:data:`OPTIONS`; ``--adapter-opts-json``, never in the memo key):
``timeout`` (seconds, > 0, at most :data:`MAX_TIMEOUT_S`: Modal's 24-hour Sandbox lifetime less the
margin). No option relaxes the sandbox: network, CPU, memory and GPU come from the spec only. The
Volume's name is ``$THEORYX_MODAL_VOLUME`` (default ``theoryx-cas``): where blobs travel, not what a
run computes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theoryx.adapters.base import (
    AdapterBase,
    ExecRequest,
    Option,
    OptionSchema,
    Outcome,
    Workspace,
    billed,
    timeout_value,
)
from theoryx.adapters.modal import blobs, boundary, sandbox
from theoryx.adapters.modal.boundary import ImageRecipe, SandboxRequest
from theoryx.core import notices
from theoryx.errors import ImageNotFound, ModalError, ModalGpuUnsupported, UsageError
from theoryx.spec.context import ContextManifest, build_args, context_manifest, platform_name
from theoryx.spec.model import ProcessorSpec
from theoryx.store.handle import Stores

MAX_LIFETIME_S = 24 * 3600                      # Modal: "a timeout of up to 24 hours"
MAX_TIMEOUT_S = MAX_LIFETIME_S - sandbox.SANDBOX_MARGIN_S - 1
STAGING_DIR = "modal-context"
VENDOR_PLACEHOLDER = ".theoryx-vendor"
LOCAL_ONLY_BASES: tuple[str, ...] = ("theoryx/",)
"""``BASE_IMAGE`` prefixes of images that exist only on this host (scripts/base-image.sh), which
Modal's builder cannot pull. Tests running the emulator on local Docker empty it."""

BUILD_NOISE: tuple[str, ...] = ("HOSTNAME", "HOME", "PWD", "OLDPWD", "SHLVL", "_")
"""Variables a Docker-style build container or its shell sets in a build step, which are not the
image's ``ENV`` (``HOME`` is set by the contract anyway)."""
PROXY_ARGS: tuple[str, ...] = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                               "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
"""Docker's predefined build arguments, which a builder may pass without an ``ARG``."""
SHELL_NOISE: tuple[str, ...] = ("_", "SHLVL", "PWD", "OLDPWD")
"""Variables ``/bin/sh`` (dash, bash, busybox ash) adds to the environment of what it runs."""
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

TAG_MANAGED = "theoryx.managed"
TAG_OWNER = "theoryx.owner"
TAG_EXECUTION = "theoryx.execution"
TAG_REF = "theoryx.ref"
_NOT_IN_TAGS = re.compile(r"[^A-Za-z0-9._-]")

# modal.com/docs/guide/gpu: the `gpu` values Modal supports and how many of each one container
# may have ("B200, H200, H100, A100, L4, T4 and L40S instances support up to 8 GPUs ... A10
# instances support up to 4"). RTX-PRO-6000 has no documented count: one. A10G is A10's older name.
GPU_TYPES: dict[str, int] = {
    "T4": 8, "L4": 8, "A10": 4, "A10G": 4, "L40S": 8, "A100": 8, "A100-40GB": 8, "A100-80GB": 8,
    "RTX-PRO-6000": 1, "H100": 8, "H100!": 8, "H200": 8, "B200": 8, "B200+": 8,
}


def modal_gpu(spec: ProcessorSpec) -> str | None:
    """``runtime.gpu`` as Modal takes it (``TYPE`` or ``TYPE:N``, type upper-cased), or None;
    :class:`ModalGpuUnsupported` for a type Modal does not document, a bare count (Modal needs a
    type), or more GPUs than Modal attaches to one container."""
    raw = spec.runtime.gpu
    if raw is None:
        return None
    name, sep, count = raw.strip().partition(":")
    kind = name.upper()
    offered = ", ".join(GPU_TYPES)
    if kind.isdigit() and not sep:
        raise ModalGpuUnsupported(f"processor {spec.ref} asks for runtime.gpu: {raw}, a count without a type; "
                                  f"Modal needs a GPU type, e.g. 'L4:{kind}' (types: {offered})", option="adapter")
    if kind not in GPU_TYPES:
        raise ModalGpuUnsupported(f"processor {spec.ref} asks for runtime.gpu: {raw}, which is not a GPU type "
                                  f"Modal documents (types: {offered})", option="adapter")
    n = int(count) if count.isdigit() else (1 if not sep else 0)
    if not 1 <= n <= GPU_TYPES[kind]:
        undocumented = " (its docs give no count for this type)" if kind == "RTX-PRO-6000" else ""
        raise ModalGpuUnsupported(f"processor {spec.ref} asks for runtime.gpu: {raw}; Modal attaches 1 to "
                                  f"{GPU_TYPES[kind]} {kind} GPU(s) to one container{undocumented}", option="adapter")
    return kind if n == 1 else f"{kind}:{n}"


@dataclass(frozen=True)
class ModalOptionSchema(OptionSchema):
    """The modal adapter's options; given the spec, :meth:`parse` also checks ``runtime.gpu``
    (:func:`modal_gpu`), so that an unsupported GPU is refused before anything is written."""

    def parse(self, raw: Any, spec: ProcessorSpec | None = None) -> dict[str, Any]:
        values = super().parse(raw, spec)
        if spec is not None:
            modal_gpu(spec)
        return values


OPTIONS = ModalOptionSchema("modal", (
    Option("timeout", "number", "the wall-clock timeout in seconds", positive=True, maximum=MAX_TIMEOUT_S),
))


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
    """The Modal app: the spec's ``adapter.modal.stub_name``, else ``theoryx-<ns>-<name>``, in
    the characters Modal allows in a name (alphanumerics, ``-``, ``_``, ``.``; starting with an
    alphanumeric; shorter than 64)."""
    raw = spec.modal_stub or f"theoryx-{spec.ref.ns}-{spec.ref.name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).lstrip("-._")[:63].rstrip("-._") or "theoryx"


def tag_value(text: str) -> str:
    """``text`` as a Modal tag value: alphanumerics, ``-``, ``_`` and ``.``, at most 63 of them
    (the SDK's rule for tags, ``modal._utils.name_utils.check_tag_dict``)."""
    return _NOT_IN_TAGS.sub("-", text)[:63] or "-"


def _digest12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def owner_tag(pid: int | None = None) -> str:
    """The owner of a Sandbox as a tag value: ``<host digest>.<boot id prefix>.<pid>.<start
    ticks>`` (:func:`theoryx.adapters.local.adapter.owner_label`'s parts, in tag characters)."""
    from theoryx.adapters.local.adapter import owner_label

    host, boot, pid_s, ticks = owner_label(pid).split("/")
    return tag_value(f"{_digest12(host)}.{boot.replace('-', '')[:12]}.{pid_s}.{ticks}")


def owner_tag_gone(tag: str) -> bool:
    """True when ``tag`` (:func:`owner_tag`) names a process of this host that no longer runs;
    Sandboxes of other hosts are never judged."""
    from theoryx.adapters.local.adapter import owner_gone, owner_label

    parts = tag.split(".")
    if len(parts) != 4 or parts[0] != _digest12(socket.gethostname()):
        return False
    host, boot, _, _ = owner_label().split("/")
    if parts[1] != boot.replace("-", "")[:12]:
        return boot != "unknown"             # this host rebooted since: its processes are gone
    return owner_gone(f"{host}/{boot}/{parts[2]}/{parts[3]}")


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` of a Dockerfile (one parser: :func:`images.dockerfile_instructions`)."""
    from theoryx.adapters.local.images import dockerfile_instructions

    out = []
    for ins in dockerfile_instructions(text):
        keyword, _, rest = ins.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stage_context(spec: ProcessorSpec, dest: Path, vendor_root: Path,
                  manifest: ContextManifest | None = None) -> None:
    """Put ``spec``'s build context in ``dest``: the files ``manifest`` lists (the context the
    run's key hashed; default: the folder's now), each copied as it is checked against its entry
    (:class:`~theoryx.errors.ImageBuildError` naming a file changed since the key was made: Modal
    then builds nothing from it), and ``vendor/`` (hard links into theoryx's vendor cache, whose
    entries are never modified; a placeholder file when there are no requirements).
    :class:`ModalError` for a symbolic link in the context: Modal's builder would follow it."""
    from theoryx.adapters.local import images

    folder = spec.folder
    manifest = manifest if manifest is not None else context_manifest(folder)
    dest.mkdir(parents=True)
    links = [rel for rel in manifest.files if (folder / rel).is_symlink()]
    if links:
        raise ModalError(f"the build context of {spec.ref} holds symbolic links ({', '.join(links[:5])}); Modal's "
                         "image builder follows links, so the image would not be the one theoryx hashed: replace "
                         "them with the files", option="adapter")
    for rel, entry in sorted(manifest.files.items()):
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as f:       # copied: the registry's sources are the user's files
            for chunk in images.file_chunks(folder, rel, entry):
                f.write(chunk)
        os.chmod(out, 0o755 if entry.get("exec") else 0o644)
    if (folder / images.REQUIREMENTS).is_file() and platform_name() != "linux/amd64":
        raise ModalError(f"processor {spec.ref} vendors {images.REQUIREMENTS}, whose wheels are chosen for "
                         f"this host's platform ({platform_name()}); Modal runs linux/amd64: run it from an "
                         "amd64 host, or use adapter='local'", option="adapter")
    vendor = images.ensure_vendor(folder, vendor_root, notices.progress, manifest)
    if vendor is None:
        (dest / images.VENDOR_DIR).mkdir()
        (dest / images.VENDOR_DIR / VENDOR_PLACEHOLDER).write_text("")
    else:
        shutil.copytree(vendor, dest / images.VENDOR_DIR, symlinks=True, copy_function=_link_or_copy)


def _last_stage(spec: ProcessorSpec) -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage (after its last ``FROM``); none for a
    pinned registry image."""
    dockerfile = spec.dockerfile_path
    if dockerfile is None:
        return []
    stage: list[tuple[str, str]] = []
    for keyword, arg in _instructions(dockerfile.read_text()):
        stage = [] if keyword == "FROM" else [*stage, (keyword, arg)]
    return stage


def _declared(keyword: str, arg: str) -> list[str]:
    """The variable names an ``ENV`` or ``ARG`` instruction declares (``ENV A=1 B="x y"``, the
    legacy ``ENV A value``, ``ARG A B=1``)."""
    try:
        words = shlex.split(arg)
    except ValueError:
        words = arg.split()
    if keyword == "ENV" and words and "=" not in words[0]:
        words = words[:1]
    return [w.split("=", 1)[0] for w in words if _IDENTIFIER.fullmatch(w.split("=", 1)[0])]


def env_names(spec: ProcessorSpec, keyword: str) -> set[str]:
    """The names the last stage declares with ``keyword`` (``ENV`` or ``ARG``)."""
    return {n for k, arg in _last_stage(spec) if k == keyword for n in _declared(k, arg)}


def build_noise(spec: ProcessorSpec) -> tuple[str, ...]:
    """What a build step's environment holds besides the image's ``ENV``, to leave out of the
    recorded environment: :data:`BUILD_NOISE`, the predefined proxy arguments, the last stage's
    ``ARG`` names and theoryx's build arguments; except the names the last stage sets with ``ENV``."""
    declared = env_names(spec, "ENV")
    names = {*BUILD_NOISE, *PROXY_ARGS, *env_names(spec, "ARG"), *build_args(spec)}
    return tuple(sorted(n for n in names if n not in declared and _IDENTIFIER.fullmatch(n)))


def shell_noise(spec: ProcessorSpec) -> tuple[str, ...]:
    """The variables a shell adds to what it runs (:data:`SHELL_NOISE`) that the processor's
    environment loses: all but those the last stage sets with ``ENV``."""
    declared = env_names(spec, "ENV")
    return tuple(n for n in SHELL_NOISE if n not in declared)


def record_env_command(spec: ProcessorSpec) -> str:
    """The build step that records the image's own environment in
    :data:`~theoryx.adapters.modal.sandbox.IMAGE_ENV`: ``export -p`` of the image's ``/bin/sh``
    (exec form, whatever the Dockerfile's ``SHELL``), less :func:`build_noise`. A build user
    that cannot write it leaves no record, which the Sandbox's setup reports."""
    target = sandbox.IMAGE_ENV
    script = (f"unset {' '.join(build_noise(spec))}; umask 022; "
              f"{{ mkdir -p {os.path.dirname(target)} && export -p > {target}; }} 2>/dev/null || true")
    return "RUN " + json.dumps(["/bin/sh", "-c", script])


def extra_commands(spec: ProcessorSpec) -> tuple[str, ...]:
    """Dockerfile lines appended to the image: the step that records its environment
    (:func:`record_env_command`), run as root when the last stage sets ``USER``, which also makes
    ``/artifacts`` and ``/theoryx`` (so the Sandbox can be prepared whether Modal runs as that user
    or as root), then restores that ``USER`` as written."""
    record = record_env_command(spec)
    users = [arg for keyword, arg in _last_stage(spec) if keyword == "USER"]
    if not users:
        return (record,)
    return ("USER root", "RUN mkdir -p /artifacts /theoryx && chmod 1777 /artifacts /theoryx", record,
            f"USER {users[-1]}")


def _check_add(spec: ProcessorSpec) -> None:
    dockerfile = spec.dockerfile_path
    if dockerfile is None:
        return
    for keyword, arg in _instructions(dockerfile.read_text()):
        if keyword == "ADD" and not re.search(r"(^|\s)(https?|git)://", arg):
            raise ModalError(f"the Dockerfile of {spec.ref} uses ADD {arg}; Modal's image builder uploads only "
                             "COPY sources: use COPY", option="adapter")


def image_recipe(spec: ProcessorSpec, staging: Path, vendor_root: Path, force: bool,
                 manifest: ContextManifest | None = None) -> ImageRecipe:
    """How Modal gets ``spec``'s image, built from ``manifest`` (the context the run's key
    hashed; :func:`stage_context`); :class:`ImageNotFound` for a local-only base image,
    :class:`ModalError` for a context Modal would build differently (see the module docstring)."""
    if spec.image.ref is not None:
        return ImageRecipe(registry_ref=spec.image.ref, force_build=force, extra_commands=extra_commands(spec))
    args = build_args(spec)
    base = args.get("BASE_IMAGE", "")
    if LOCAL_ONLY_BASES and base.startswith(LOCAL_ONLY_BASES):
        raise ImageNotFound(
            f"BASE_IMAGE {base} (THEORYX_BASE_IMAGE) is a local image that Modal's builder cannot pull; "
            "unset THEORYX_BASE_IMAGE or set it to an image in a registry Modal can reach")
    _check_add(spec)
    stage_context(spec, staging, vendor_root, manifest)
    dockerfile = Path(spec.image.dockerfile or "Dockerfile").name
    return ImageRecipe(dockerfile=str(staging / dockerfile), context_dir=str(staging), build_args=args,
                       force_build=force, extra_commands=extra_commands(spec))


# -- the command -------------------------------------------------------------------------------


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
    if "=" in command[0]:      # the processor is exec'd through `env`, which reads it as a variable
        raise UsageError(f"processor {spec.ref}: the modal adapter cannot run a program whose name contains "
                         f"'=' ({command[0]!r}); name it by a path without '='")
    return command, cwd


# -- the inputs --------------------------------------------------------------------------------


def input_blobs(ws: Workspace) -> tuple[list[blobs.BlobFile], str, tuple[tuple[str, str, str], ...]]:
    """The blobs a run reads: its attachments (``ws.inputs/<cid>/<name>``, materialised and hashed
    by the executor) and its rewritten inputs JSON; with the mounted path of the JSON and the
    ``(cid, name, mounted path)`` of each attachment."""
    from cas.hashing import cid_of_bytes

    files: list[blobs.BlobFile] = []
    placed: list[tuple[str, str, str]] = []
    if ws.inputs.is_dir():
        for cid_dir in sorted(ws.inputs.iterdir()):
            for f in sorted(cid_dir.iterdir()):
                files.append(blobs.BlobFile(cid_dir.name, f.stat().st_size, f))
                placed.append((cid_dir.name, f.name, blobs.mounted(cid_dir.name)))
    data = ws.inputs_json.read_bytes()
    cid = cid_of_bytes(data)
    files.append(blobs.BlobFile(cid, len(data), ws.inputs_json))
    return files, blobs.mounted(cid), tuple(placed)


# -- leftovers ---------------------------------------------------------------------------------

_leftovers_lock = threading.Lock()
_leftovers_checked = False


def remove_leftovers() -> list[str]:
    """Terminate theoryx's Sandboxes whose owner process (on this host) is gone; their ids."""
    gone = []
    for sb, tags in boundary.tagged({TAG_MANAGED: "1"}):
        if owner_tag_gone(tags.get(TAG_OWNER, "")):
            try:
                boundary.terminate(sb)
            except ModalError as exc:      # racing another cleaner, or already gone
                notices.note(f"could not terminate a leftover Modal Sandbox: {exc.message}")
                continue
            gone.append(str(getattr(sb, "object_id", "")))
    return gone


def _remove_leftovers_once() -> None:
    global _leftovers_checked
    with _leftovers_lock:
        if _leftovers_checked:
            return
        _leftovers_checked = True
    removed = remove_leftovers()
    if removed:
        notices.note(f"terminated {len(removed)} Modal Sandbox(es) left by theoryx processes that are gone")


# -- the adapter -------------------------------------------------------------------------------


class ModalAdapter(AdapterBase):
    """Runs processors in Modal Sandboxes; see the module docstring. Thread-safe: a batch of runs
    may share one process (each run has its own workspace, Sandbox and log captures; the blob
    volume's bookkeeping is locked)."""

    name = "modal"
    env_class = "modal"
    bills_compute = True
    compute_rates = "sandbox"
    billing_margin_s = sandbox.SANDBOX_MARGIN_S + 1   # the Sandbox outlives the timeout by at most this

    def __init__(self, stores: Stores | None = None, build: bool = False) -> None:
        self.vendor_root = stores.home.vendor if stores is not None else Path.home() / ".cache/theoryx/vendor-v1"
        self.build = build

    def execute(self, request: ExecRequest) -> Outcome:
        spec, ws = request.spec, request.workspace
        opts = Options.parse(spec, request.options)
        gpu = modal_gpu(spec)
        command, cwd = command_and_cwd(spec)
        recipe = image_recipe(spec, ws.root / STAGING_DIR, self.vendor_root, self.build, request.context)
        self.build = False
        files, inputs_blob, placed = input_blobs(ws)
        volume = blobs.volume_name()
        store = blobs.BlobVolume.named(volume)
        vol = boundary.volume(volume)
        ensured = store.ensure(files, lambda path: boundary.blob_size(vol, path),
                               lambda pairs: boundary.upload(vol, pairs))
        rt = spec.runtime
        lifetime = sandbox.sandbox_timeout(opts.timeout)
        plan = sandbox.Plan(
            sandbox=SandboxRequest(
                app_name=app_name(spec), image=recipe, command=sandbox.IDLE, cpu=rt.cpu, memory_mib=rt.memory,
                gpu=gpu, timeout_s=lifetime, block_network=not rt.network, workdir=cwd,
                volumes={blobs.CAS_MOUNT: (volume, True)},
                tags={TAG_MANAGED: "1", TAG_OWNER: owner_tag(), TAG_EXECUTION: tag_value(request.execution_id),
                      TAG_REF: tag_value(str(spec.ref))}),
            command=tuple(command), cwd=cwd, timeout=opts.timeout, inputs_blob=inputs_blob,
            attachments=placed, gpu=gpu is not None, env_drop=shell_noise(spec))
        notices.progress(f"theoryx: running {spec.ref} in a Modal Sandbox (app {plan.sandbox.app_name}; "
                         "the first run of an image builds it there)")
        secrets = [boundary.secret(request.secrets)] if request.secrets else []

        def meta(lifetime_s: float, image_build_s: float) -> dict[str, Any]:
            lifetime_ms = round(lifetime_s * 1000)
            return {
                "compute_seconds": lifetime_ms / 1000, "cpu": rt.cpu, "memory_mib": rt.memory, "gpu": gpu,
                "app": plan.sandbox.app_name, "timeout_s": _seconds(opts.timeout), "sandbox_timeout_s": lifetime,
                "volume": volume, "uploaded_blobs": ensured.uploaded, "uploaded_bytes": ensured.uploaded_bytes,
                "image_build_s": round(image_build_s, 3),
                # the basis of the charge, for the plan's settle event: compute = the Sandbox's measured
                # lifetime; the image build is not charged (measured apart, never inside the lifetime)
                "billing": {**sandbox.BILLING, "compute_ms": lifetime_ms,
                            "image_build_ms": round(image_build_s * 1000)},
            }

        try:
            ran = sandbox.run(plan, request, secrets)
        except BaseException as exc:
            lived = getattr(exc, "sandbox_lifetime_s", None)
            if lived is not None:      # a Sandbox existed: Modal bills it, so the failed run is charged
                billed(exc, Outcome(-1, False, False, round(lived * 1000), meta(lived, exc.image_build_s)))  # type: ignore[attr-defined]
            raise
        return Outcome(ran.exit_code, ran.timed_out, ran.oom_killed, ran.duration_ms,
                       meta(ran.lifetime_s, ran.image_build_s), ran.log_dropped)


def _seconds(value: float) -> int | float:
    return int(value) if value == int(value) else value


def create(*, stores: Stores | None = None, build: bool = False, **_: Any) -> ModalAdapter:
    """The adapter, after the credentials check (:class:`ModalCredentialsMissing` without
    contacting Modal) and, once per process, the removal of Sandboxes left by dead theoryx
    processes of this host."""
    boundary.require_credentials()
    _remove_leftovers_once()
    return ModalAdapter(stores, build)


__all__ = ["GPU_TYPES", "OPTIONS", "ModalAdapter", "Options", "create", "modal_gpu", "owner_tag", "owner_tag_gone",
           "tag_value"]
