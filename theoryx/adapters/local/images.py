"""Processor images: resolve, build offline, tag by content, vendor Python requirements.

A Dockerfile spec's image is tagged ``theoryx/<ns>-<name>:<16 hex>``, the hex being the digest of
the image identity (:func:`theoryx.spec.context.image_identity`: build context manifest + build args),
the vendoring parameters and the ids of the ``FROM`` images (a rebuilt base image means a
rebuild; the memo key, computed without Docker, does not see it). It is built only when that
tag is missing locally or a rebuild is forced (``--build``, ``theoryx image build --force``,
which also bypasses the layer cache).

A run's image comes from the :class:`BuildContext` the run was prepared with (the action's image
identity and its context manifest, handed down in ``ExecRequest.context``), never from the folder
read again: the tag is derived from it (an image under that tag is reused as it is), the
Dockerfile's ``FROM`` lines and ``requirements.txt`` are read only as the bytes it lists, and the
build context sends exactly its files, each hashed while it is sent and checked against its
entry. A file that changed since the run was prepared (content, size, gone, a link retargeted,
no longer a regular file) fails the build with :class:`ImageBuildError` naming it, before the
file's last chunk and the tar's end reach the engine, so no image is built from it; a file that
appeared since is not part of the keyed context and is not sent. ``theoryx image build`` reads
the folder once, now, and builds from that reading the same way.

The build context is streamed to the engine as a tar generated on the fly (nothing is copied):
the files the context manifest lists (same exclusions), with mtime 0, owner root and modes
0644/0755 from the manifest's executable bit, plus a ``vendor/`` directory, always present so that Dockerfiles
can ``COPY vendor/ ...`` unconditionally. When the folder has a ``requirements.txt``, ``vendor/``
holds those requirements installed on the host with ``pip install --target`` (binary wheels for
the container's platform and Python, not byte-compiled: a Dockerfile that wants pycs under a
read-only root runs ``compileall --invalidation-mode unchecked-hash`` itself, which needs no
network), cached under ``<home>/vendor-v1/<digest>`` by the digest of ``requirements.txt`` and
the vendoring parameters, published by renaming a finished temp dir.

Builds run with the network disabled and never pull: every ``FROM`` image must exist locally,
else :class:`ImageNotFound` names the command that fixes it. A pinned ``image.ref`` is used when
present locally, else :class:`ImageNotFound` (never pulled).

Environment: ``THEORYX_VENDOR_PYTHON`` (default 3.11) is the container's Python version that
wheels are selected for.

Errors: :class:`ImageNotFound`, :class:`ImageBuildError` (pip or the engine failed; the message
ends with the tail of the log), :class:`DockerUnavailable`/:class:`AdapterError` from the edge.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tarfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from theoryx.adapters.local import docker_client
from theoryx.adapters.local.docker_client import find_image, mapped, require_image, translate
from theoryx.core.canonical import canonical_digest, digest
from theoryx.errors import AdapterError, ImageBuildError, ImageNotFound, SpecError
from theoryx.spec.context import (
    ContextManifest,
    build_args,
    context_manifest,
    image_identity,
    link_bytes,
    platform_name,
)
from theoryx.spec.model import ProcessorSpec

Log = Callable[[str], None]

VENDOR_FORMAT = 1
VENDOR_DIR = "vendor"
REQUIREMENTS = "requirements.txt"
MAX_GLIBC_MINOR = 36          # Debian bookworm's glibc 2.36: newest manylinux wheels that run
BUILD_TIMEOUT_S = 3600
PIP_TIMEOUT_S = 1800
LABEL_REF = "theoryx.ref"
LABEL_IDENTITY = "theoryx.identity"
LABEL_CONTEXT = "theoryx.context"
LABEL_BASES = "theoryx.bases"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ImageInfo:
    """A resolved image: what to run (``name``), its engine id, and whether it was just built."""

    name: str
    id: str
    built: bool = False


# -- naming ------------------------------------------------------------------------------------


def vendor_params() -> dict[str, Any]:
    """What, besides ``requirements.txt``, decides the vendored packages."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform_name().split("/")[1], "x86_64")
    platforms = [f"manylinux_2_{m}_{arch}" for m in range(MAX_GLIBC_MINOR, 16, -1)]
    return {
        "format": VENDOR_FORMAT,
        "python": os.environ.get("THEORYX_VENDOR_PYTHON", "3.11"),
        "implementation": "cp",
        "platforms": [*platforms, f"manylinux2014_{arch}"],
    }


@dataclass(frozen=True)
class BuildContext:
    """What a Dockerfile image is built from: ``identity``, the ``image`` part of a run's action
    (what its memo key hashed: Dockerfile name, context cid, build args), and ``manifest``, the
    context manifest that cid names. A run passes the ones it was prepared with, so the image
    it runs is tagged by and built from exactly what its key hashed; every file is checked
    against the manifest while the context is sent (:func:`context_tar`)."""

    identity: Mapping[str, Any]
    manifest: ContextManifest

    @classmethod
    def now(cls, spec: ProcessorSpec) -> BuildContext:
        """``spec``'s folder as it is now (``theoryx image build``, prune)."""
        identity, manifest = image_identity(spec, "container")
        return cls(identity, manifest)

    @property
    def build_args(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in dict(self.identity.get("build_args") or {}).items()}


def prepared_context(spec: ProcessorSpec, identity: Any, manifest: ContextManifest | None) -> BuildContext | None:
    """The :class:`BuildContext` of a prepared run from its action's ``image`` part and its
    context manifest; None for a pinned image (nothing to build). A run handed over without its
    manifest has the folder read now, which must still be what the key hashed (checked by
    :func:`ensure`)."""
    if spec.image.ref is not None or not isinstance(identity, Mapping) or identity.get("kind") != "dockerfile":
        return None
    return BuildContext(identity, context_manifest(spec.folder) if manifest is None else manifest)


def _repo(ns: str, name: str) -> str:
    """The repository of a processor's images: ``theoryx/<ns>-<name>``."""
    return "theoryx/" + re.sub(r"[^a-z0-9]+", "-", f"{ns}-{name}").strip("-")


def image_tag(spec: ProcessorSpec, bases: dict[str, str] | None = None, context: BuildContext | None = None) -> str:
    """``theoryx/<ns>-<name>:<16 hex>`` of the image identity (``context``'s, else the folder's
    now), the vendoring parameters and the ids of the base images (``{name: id}``), so that a
    rebuilt base image means a rebuild."""
    identity = (BuildContext.now(spec) if context is None else context).identity
    key = canonical_digest({"image": identity, "vendor": vendor_params(), "bases": bases or {}})
    return f"{_repo(spec.ref.ns, spec.ref.name)}:{key[3:19]}"


# -- resolving ---------------------------------------------------------------------------------


def ensure(client: Any, spec: ProcessorSpec, vendor_root: Path, *, context: BuildContext | None = None,
           force: bool = False, notice: Log | None = None, progress: Log | None = None) -> ImageInfo:
    """The image to run ``spec`` with, building it when missing (or always, when ``force``).
    ``context`` is what a run's key hashed (None: the folder as it is now): the tag is derived
    from it, an image under that tag is reused, and a build sends exactly its files or fails
    with :class:`ImageBuildError` naming the file that changed since."""
    if spec.image.ref is not None:
        image = require_image(client, spec.image.ref,
                              f"load or pull it yourself first (e.g. docker pull {spec.image.ref})")
        return ImageInfo(spec.image.ref, image.id)
    context = BuildContext.now(spec) if context is None else context
    _check_context(spec, context)
    bases = resolve_bases(client, spec, context)
    tag = image_tag(spec, bases, context)
    if not force:
        image = find_image(client, tag)
        if image is not None:
            return ImageInfo(tag, image.id)
    if notice is not None:
        notice(f"theoryx: building image {tag} for {spec.ref} (cached by its build context)")
    image_id = build(client, spec, tag, vendor_root, bases=bases, context=context, nocache=force, notice=notice,
                     progress=progress)
    return ImageInfo(tag, image_id, built=True)


def _check_context(spec: ProcessorSpec, context: BuildContext) -> None:
    """:class:`ImageBuildError` unless ``context``'s identity names its manifest (a run's
    folder re-read after it was prepared gives another one when the folder changed)."""
    identity = context.identity
    if identity.get("kind") != "dockerfile":
        raise AdapterError(f"processor {spec.ref} has no Dockerfile to build")
    if identity.get("context") != context.manifest.cid:
        raise ImageBuildError(
            f"the processor folder {spec.folder} changed after the run of {spec.ref} was prepared: its build "
            f"context is now {context.manifest.cid}, the run's key hashed {identity.get('context')}; run it "
            "again to use the folder as it is now")


def build(client: Any, spec: ProcessorSpec, tag: str, vendor_root: Path, *, bases: dict[str, str] | None = None,
          context: BuildContext | None = None, nocache: bool = False, notice: Log | None = None,
          progress: Log | None = None) -> str:
    """Build ``spec``'s Dockerfile offline as ``tag``; return the image id. ``bases`` are the
    resolved ``FROM`` images (resolved here when not given); ``context`` is what to build from
    (None: the folder as it is now), its files checked against its manifest as they are sent."""
    dockerfile = spec.dockerfile_path
    if dockerfile is None:
        raise AdapterError(f"processor {spec.ref} has no Dockerfile to build")
    context = BuildContext.now(spec) if context is None else context
    _check_context(spec, context)
    args = context.build_args
    bases = resolve_bases(client, spec, context) if bases is None else bases
    manifest = context.manifest
    vendor = ensure_vendor(spec.folder, vendor_root, notice, manifest)
    labels = {LABEL_REF: str(spec.ref), LABEL_CONTEXT: manifest.cid,
              LABEL_IDENTITY: canonical_digest(dict(context.identity)),
              LABEL_BASES: " ".join(f"{name}@{bid}" for name, bid in sorted(bases.items()))}
    changed: list[ImageBuildError] = []       # the context's own verdict, whatever the HTTP layer makes of it

    def body() -> Iterator[bytes]:
        try:
            yield from context_tar(spec.folder, manifest.files, vendor)
        except ImageBuildError as exc:
            changed.append(exc)
            raise

    try:
        stream = client.api.build(
            fileobj=body(), custom_context=True, tag=tag,
            dockerfile=dockerfile.name, buildargs=args, network_mode="none", pull=False, rm=True,
            forcerm=True, nocache=nocache, decode=True, labels=labels, timeout=BUILD_TIMEOUT_S,
        )
        image_id = _follow_build(stream, spec, progress)
    except (ImageBuildError, ImageNotFound):
        raise
    except Exception as exc:
        if changed:
            raise changed[0] from exc
        err = translate(exc, f"building the image of {spec.ref}")
        raise (ImageBuildError(err.message) if type(err) is AdapterError else err) from exc
    return image_id


def _follow_build(stream: Iterable[dict[str, Any]], spec: ProcessorSpec, progress: Log | None) -> str:
    """Consume the engine's build messages; the image id, or :class:`ImageBuildError`."""
    tail: deque[str] = deque(maxlen=40)
    image_id = ""
    for msg in stream:
        text = str(msg.get("stream") or msg.get("status") or "")
        if text.strip():
            tail.extend(text.rstrip("\n").splitlines())
            if progress is not None:
                progress(text.rstrip("\n"))
        if "error" in msg:
            log = "\n".join([*tail, str(msg["error"])])
            raise ImageBuildError(f"building the image of {spec.ref} failed:\n{log}")
        aux = msg.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
    if not image_id:
        raise ImageBuildError(f"building the image of {spec.ref} gave no image id:\n" + "\n".join(tail))
    return image_id


# -- base images -------------------------------------------------------------------------------

_ARG = re.compile(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$", re.IGNORECASE)
_FROM = re.compile(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def dockerfile_instructions(text: str) -> Iterator[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        yield (current + line).strip()
        current = ""
    if current.strip():
        yield current.strip()


def base_images(dockerfile_text: str, args: dict[str, str]) -> list[str]:
    """The images the Dockerfile's ``FROM`` lines name (after ``ARG`` substitution), excluding
    ``scratch`` and earlier build stages."""
    scope: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    seen_from = False
    for ins in dockerfile_instructions(dockerfile_text):
        if (m := _ARG.match(ins)) and not seen_from:
            default = (m.group(2) or "").strip().strip("\"'")
            scope[m.group(1)] = args.get(m.group(1), default)
        elif m := _FROM.match(ins):
            seen_from = True
            image = _VAR.sub(lambda v: scope.get(v.group(1) or v.group(3), v.group(2) or ""), m.group(1))
            if image and image.lower() != "scratch" and image not in stages:
                bases.append(image)
            if m.group(2):
                stages.add(m.group(2))
    return bases


def resolve_bases(client: Any, spec: ProcessorSpec, context: BuildContext | None = None) -> dict[str, str]:
    """``{name: image id}`` of the Dockerfile's ``FROM`` images; :class:`ImageNotFound` for the
    first one not present locally (the legacy builder would otherwise pull it). With ``context``,
    the Dockerfile read must be the one its manifest lists, and its build args are used."""
    dockerfile = spec.dockerfile_path
    if dockerfile is None:
        return {}
    if context is None:
        text, args = dockerfile.read_text(), build_args(spec)
    else:
        rel = dockerfile.relative_to(spec.folder).as_posix()
        text, args = verified_bytes(spec.folder, rel, context.manifest).decode(), context.build_args
    bases = {}
    for base in base_images(text, args):
        image = find_image(client, base)
        if image is not None:
            bases[base] = str(image.id)
            continue
        raise ImageNotFound(
            f"base image {base} of {spec.ref} is not present locally and theoryx never pulls "
            "images; build the offline base image and use it: bash scripts/base-image.sh (in theoryx's "
            "source repository) && export THEORYX_BASE_IMAGE=theoryx/python-base:bookworm"
            f" (or provide {base} yourself, e.g. docker pull {base})"
        )
    return bases


# -- build context -----------------------------------------------------------------------------


def _header(info: tarfile.TarInfo) -> bytes:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _dir_entry(arcname: str) -> bytes:
    info = tarfile.TarInfo(arcname)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return _header(info)


def _path_entry(path: Path, arcname: str) -> Iterator[bytes]:
    """The tar bytes of one file or symlink, streamed in chunks."""
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
        yield _header(info)
        return
    info.size = st.st_size
    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    yield _header(info)
    with open(path, "rb") as f:
        remaining = info.size
        while remaining > 0:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                raise ImageBuildError(f"{path} shrank while the build context was being sent")
            remaining -= len(chunk)
            yield chunk
    if info.size % tarfile.BLOCKSIZE:
        yield b"\0" * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)


def _changed(folder: Path, rel: str, how: str) -> ImageBuildError:
    return ImageBuildError(
        f"the processor folder {folder} changed while its image was being built from what the run's key "
        f"hashed: {rel} ({how}); run again to use the folder as it is now")


def _open_file(folder: Path, rel: str) -> Any:
    """``rel`` opened for reading, not following a link, never blocking on a FIFO; a file that
    is gone or is no longer a regular file is :func:`_changed`."""
    try:
        fd = os.open(folder / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _changed(folder, rel, "it is gone") from None
    except OSError as exc:
        raise _changed(folder, rel, f"it cannot be read: {exc.strerror}") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise _changed(folder, rel, "it is no longer a regular file")
    return f


def file_chunks(folder: Path, rel: str, entry: Mapping[str, Any]) -> Iterator[bytes]:
    """The bytes of the regular file ``rel``, hashed as they are read and checked against its
    manifest ``entry`` (size and cid); the last chunk is held back until the check passed, so a
    changed file never reaches the engine whole (and the tar never ends)."""
    size, cid = int(entry["size"]), str(entry["cid"])
    with _open_file(folder, rel) as f:
        hasher = blake3.blake3()
        held = b""
        remaining = size
        while remaining > 0:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                raise _changed(folder, rel, "it shrank")
            hasher.update(chunk)
            remaining -= len(chunk)
            if held:
                yield held
            held = chunk
        if f.read(1):
            raise _changed(folder, rel, "it grew")
        if "b3:" + hasher.hexdigest() != cid:
            raise _changed(folder, rel, "its content differs")
    if held:
        yield held


def verified_bytes(folder: Path, rel: str, manifest: ContextManifest) -> bytes:
    """The bytes of ``rel`` in ``folder``, which must be the ones ``manifest`` lists (a small
    file read whole: the Dockerfile)."""
    entry = manifest.files.get(rel)
    if entry is None:
        raise ImageBuildError(f"{rel} of {folder} is not part of its build context (excluded by .dockerignore?)")
    if (folder / rel).is_symlink():
        raise ImageBuildError(f"{rel} of {folder} is a symbolic link; theoryx reads it only as a regular file")
    return b"".join(file_chunks(folder, rel, entry))


def _manifest_entry(folder: Path, rel: str, entry: Mapping[str, Any]) -> Iterator[bytes]:
    """The tar bytes of the context file ``rel`` as its manifest ``entry`` describes it (its
    executable bit decides the mode), checked against it as it is streamed."""
    info = tarfile.TarInfo(rel)
    try:
        st = os.lstat(folder / rel)
        target = os.readlink(folder / rel) if stat.S_ISLNK(st.st_mode) else None
    except FileNotFoundError:
        raise _changed(folder, rel, "it is gone") from None
    except OSError as exc:
        raise _changed(folder, rel, f"it cannot be read: {exc.strerror}") from None
    if target is not None:
        if digest(link_bytes(target)) != entry["cid"]:
            raise _changed(folder, rel, "the symbolic link differs")
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        yield _header(info)
        return
    info.size = int(entry["size"])
    info.mode = 0o755 if entry["exec"] else 0o644
    yield _header(info)
    yield from file_chunks(folder, rel, entry)
    if info.size % tarfile.BLOCKSIZE:
        yield b"\0" * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)


def _parents(rel: str, emitted: set[str]) -> Iterator[bytes]:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in emitted:
            emitted.add(d)
            yield _dir_entry(d)


def _vendor_entries(vendor: Path | None) -> Iterator[tuple[Path, str]]:
    """``(host path, arcname)`` below ``vendor/``, sorted, links not followed; dirs end in '/'."""
    if vendor is None:
        return
    for dirpath, dirnames, filenames in os.walk(vendor):
        dirnames.sort()
        base = Path(dirpath)
        rel = base.relative_to(vendor).as_posix()
        prefix = VENDOR_DIR if rel == "." else f"{VENDOR_DIR}/{rel}"
        for d in dirnames:
            if (base / d).is_symlink():
                yield base / d, f"{prefix}/{d}"
            else:
                yield base / d, f"{prefix}/{d}/"
        for fn in sorted(filenames):
            yield base / fn, f"{prefix}/{fn}"


def context_tar(folder: Path, files: Mapping[str, Mapping[str, Any]], vendor: Path | None) -> Iterator[bytes]:
    """The build context as an uncompressed tar, generated lazily: the files of ``folder`` that
    the context manifest's ``files`` lists (``{relpath: {"cid", "size", "exec"}}``), each checked
    against its entry while it is sent (:class:`ImageBuildError` naming the first that changed:
    the tar then never ends, and no image is built), then ``vendor/`` (from ``vendor``, or
    empty). A file the manifest does not list is not sent, whatever the folder holds now."""
    emitted: set[str] = set()
    for rel in sorted(files):
        yield from _parents(rel, emitted)
        yield from _manifest_entry(folder, rel, files[rel])
    yield _dir_entry(VENDOR_DIR)
    for path, arcname in _vendor_entries(vendor):
        if arcname.endswith("/"):
            yield _dir_entry(arcname.rstrip("/"))
        else:
            yield from _path_entry(path, arcname)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


# -- vendoring ---------------------------------------------------------------------------------


def vendor_key(requirements: bytes) -> str:
    """The cache key (64 hex) of a requirements file's installation."""
    return canonical_digest({"requirements": blake3.blake3(requirements).hexdigest(),
                             "params": vendor_params()})[3:]


def ensure_vendor(folder: Path, vendor_root: Path, notice: Log | None = None,
                  manifest: ContextManifest | None = None) -> Path | None:
    """The installed ``requirements.txt`` of ``folder`` (None without one), installing it once.
    With ``manifest`` (what a run's key hashed), the requirements are the ones it lists: none
    when it lists none, and an installation is kept only if the file still has the listed
    bytes after pip read it."""
    req = folder / REQUIREMENTS
    if manifest is None:
        if not req.is_file():
            return None
        key = vendor_key(req.read_bytes())
    else:
        if REQUIREMENTS not in manifest.files:
            return None
        key = vendor_key(verified_bytes(folder, REQUIREMENTS, manifest))
    dest = vendor_root / key
    if dest.is_dir():
        return dest
    vendor_root.mkdir(parents=True, exist_ok=True)
    with open(vendor_root / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_dir():       # installed by a concurrent run while we waited
            return dest
        for stale in vendor_root.glob(f".tmp-{key}-*"):   # crashed installs (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if notice is not None:
            notice(f"theoryx: installing {req} for the image build (once; cached by its digest)")
        tmp = vendor_root / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            _pip_install(req, tmp)
            if manifest is not None:      # pip read the file by its path: still the listed bytes?
                verified_bytes(folder, REQUIREMENTS, manifest)
            os.chmod(tmp, 0o755)
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _pip_install(req: Path, target: Path) -> None:
    params = vendor_params()
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-input", "--no-compile", "--target", str(target), "--only-binary=:all:",
           "--python-version", params["python"], "--implementation", params["implementation"]]
    for plat in params["platforms"]:
        cmd += ["--platform", plat]
    _run_tool([*cmd, "-r", str(req)], req.parent, f"pip install -r {req}")


def _run_tool(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageBuildError(f"{what} failed: {exc}") from exc
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip().splitlines()[-25:]
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(out))


# -- listing -----------------------------------------------------------------------------------


def list_images(client: Any) -> list[dict[str, Any]]:
    """The images theoryx built: ``{"tags", "id", "ref", "identity", "created", "size"}``."""
    with mapped("listing images"):
        images = client.images.list(filters={"label": LABEL_IDENTITY})
    rows = []
    for img in images:
        labels = img.labels or {}
        rows.append({
            "tags": list(img.tags), "id": img.id, "ref": labels.get(LABEL_REF, ""),
            "identity": labels.get(LABEL_IDENTITY, ""), "created": img.attrs.get("Created", ""),
            "size": int(img.attrs.get("Size") or 0),
        })
    return sorted(rows, key=lambda r: (r["ref"], r["created"]))


# -- pruning -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune` did (or, with ``dry_run``, would do), each image as a row of
    :func:`list_images` with a ``why``: ``removed`` (or to remove), ``kept`` (current, or not a
    processor of the registry it was given) and ``failed`` (the engine refused: in use by a
    container, or gone meanwhile)."""

    removed: tuple[dict[str, Any], ...]
    kept: tuple[dict[str, Any], ...]
    failed: tuple[dict[str, Any], ...]


def prune(client: Any, specs: dict[str, ProcessorSpec | None], *, everything: bool = False,
          dry_run: bool = False) -> Pruned:
    """Remove the images theoryx built for the processors in ``specs`` (ref -> spec; None for a
    spec that cannot be read) that none of them would run any more: an image is current when
    ANY spec of ``specs`` now resolves to one of its tags (specs of one processor name share
    an image when their build contexts and args are the same, and its label names only the ref
    that built it first), stale otherwise. With ``everything``, current images go too (the next
    run rebuilds them). Images whose ref is not in ``specs`` (another registry's) are kept, and
    so is every image that a spec whose current image cannot be told (it cannot be read, its
    base image is missing, or it is the image's own ref and pins an image) might be: one of that
    spec's repository ``theoryx/<ns>-<name>``. Cached results never depend on an image being
    present: a run whose image was removed rebuilds it from the same context."""
    current: set[str] = set()         # the tags the specs resolve to now
    unknown_refs: set[str] = set()    # refs whose current tag cannot be told
    unknown_repos: set[str] = set()   # ... and the repositories their images would be in
    for ref, spec in specs.items():
        if spec is not None and spec.image.ref is None:
            try:
                current.add(image_tag(spec, resolve_bases(client, spec)))
                continue
            except (ImageNotFound, SpecError):     # a base missing, a folder refused: cannot be told
                pass
        unknown_refs.add(ref)
        ns_name = ref.split("@", 1)[0].split("/", 1)
        if (spec is None or spec.image.ref is None) and len(ns_name) == 2:   # a pinned spec runs none of them
            unknown_repos.add(_repo(*ns_name))
    removed, kept, failed = [], [], []
    for row in list_images(client):
        ref = row["ref"]
        is_current = any(tag in current for tag in row["tags"])
        if not is_current and ref not in specs:
            kept.append({**row, "why": "not a processor of this registry"})
            continue
        if not is_current and (ref in unknown_refs
                               or any(tag.rsplit(":", 1)[0] in unknown_repos for tag in row["tags"])):
            kept.append({**row, "why": "its current image cannot be told (spec or base image missing)"})
            continue
        if is_current and not everything:
            kept.append({**row, "why": "current"})
            continue
        why = "current (--all)" if is_current else "stale: not the image its spec builds now"
        if dry_run:
            removed.append({**row, "why": why})
            continue
        try:
            client.images.remove(row["id"], force=False, noprune=False)
        except Exception as exc:
            if not (docker_client.is_conflict(exc) or docker_client.is_missing(exc)):
                raise translate(exc, f"removing image {row['id'][7:19]}") from exc
            failed.append({**row, "why": docker_client.explanation(exc)})   # in use, or gone meanwhile
            continue
        removed.append({**row, "why": why})
    return Pruned(tuple(removed), tuple(kept), tuple(failed))
