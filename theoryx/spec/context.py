"""Image identity: what of a processor's image enters the memo key.

For a Dockerfile image it is the digest of the build context manifest (every file's relative
path, cid, size and executable bit; ``__pycache__``, ``*.pyc``, ``vendor/`` and ``.dockerignore``
patterns excluded) plus the build args, including the configured base image. For a prebuilt image
it is its pinned digest. The mock environment hashes the processor folder (its ``mock.py``)
instead of any image. Computing this reads only the small context files, never Docker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import blake3

from theoryx.core.canonical import canonical_bytes, digest
from theoryx.spec.model import ProcessorSpec

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

_ALWAYS_EXCLUDED_DIRS = {"__pycache__", "vendor", ".git"}
BASE_IMAGE_ENV = "THEORYX_BASE_IMAGE"


@dataclass(frozen=True)
class ContextManifest:
    """The files of a build context: ``{relpath: {"cid", "size", "exec"}}`` and its digest.
    ``data`` and ``cid`` are computed once per manifest (a batch's misses share one); ``files``
    must not be changed after they are read."""

    files: dict[str, dict[str, Any]]

    @cached_property
    def data(self) -> bytes:
        return canonical_bytes({"files": self.files})

    @cached_property
    def cid(self) -> str:
        return digest(self.data)


def _ignore_patterns(folder: Path) -> list[str]:
    f = folder / ".dockerignore"
    if not f.is_file():
        return []
    lines = (ln.strip() for ln in f.read_text().splitlines())
    return [ln.rstrip("/") for ln in lines if ln and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(".pyc"):
        return True
    if not patterns:
        return False
    import fnmatch

    return any(
        fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p.lstrip("/"))
        for p in patterns
    )


def context_manifest(folder: Path, *, dockerignore: bool = True) -> ContextManifest:
    """Hash every file of ``folder`` (sorted, deterministic); symlinks are hashed as their target
    text so a link can't pull in files from outside. ``dockerignore=False`` also hashes what
    ``.dockerignore`` excludes (the mock environment runs ``mock.py``, which images ignore)."""
    files: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return ContextManifest(files)
    patterns = _ignore_patterns(folder) if dockerignore else []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in _ALWAYS_EXCLUDED_DIRS)
        for fn in sorted(filenames):
            full = Path(dirpath) / fn
            rel = full.relative_to(folder).as_posix()
            if _ignored(rel, patterns):
                continue
            if full.is_symlink():
                data = ("symlink:" + os.readlink(full)).encode()
                files[rel] = {"cid": digest(data), "size": len(data), "exec": False}
                continue
            data = full.read_bytes()
            files[rel] = {
                "cid": "b3:" + blake3.blake3(data).hexdigest(),
                "size": len(data),
                "exec": os.access(full, os.X_OK),
            }
    return ContextManifest(files)


def platform_name() -> str:
    machine = os.uname().machine.lower()  # not `platform`: costly to import on every hit
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"linux/{arch}"


def build_args(spec: ProcessorSpec) -> dict[str, str]:
    """The build args theoryx passes: the spec's, plus ``BASE_IMAGE`` when configured."""
    args = dict(spec.image.build_args)
    base = os.environ.get(BASE_IMAGE_ENV)
    if base:
        args["BASE_IMAGE"] = base
    return dict(sorted(args.items()))


def image_identity(spec: ProcessorSpec, env_class: str) -> tuple[dict[str, Any], ContextManifest]:
    """The ``image`` part of the action for ``env_class`` and the context manifest it names."""
    if env_class == "mock":
        manifest = context_manifest(spec.folder, dockerignore=False)
        return {"kind": "mock", "context": manifest.cid}, manifest
    manifest = context_manifest(spec.folder)
    if spec.image.ref is not None:
        return {"kind": "ref", "ref": spec.image.ref}, manifest
    return {
        "kind": "dockerfile",
        "dockerfile": Path(spec.image.dockerfile or "Dockerfile").name,
        "context": manifest.cid,
        "build_args": build_args(spec),
    }, manifest


def env_identity(env_class: str) -> dict[str, str]:
    """The execution environment class: mock results never share keys with container ones."""
    if env_class == "mock":
        return {"class": "mock"}
    if env_class == "modal":
        # revision 2: the processor runs with exactly the image's ENV, the contract and the secrets
        # (BUILD.md section 9); results of the earlier runner never answer these runs
        return {"class": env_class, "platform": platform_name(), "revision": "2"}
    return {"class": env_class, "platform": platform_name()}
