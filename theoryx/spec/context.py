r"""Image identity: what of a processor's image enters the memo key.

For a Dockerfile image it is the digest of the build context manifest (every file's relative
path, cid, size and executable bit; ``__pycache__``, ``*.pyc``, ``.git``, the top-level
``vendor/`` and ``.dockerignore`` patterns excluded) plus the build args, including the
configured base image. For a prebuilt image it is its pinned digest. The mock environment hashes
the processor folder (its ``mock.py`` and whatever it reads) instead of any image. Computing this
reads only the context files, never Docker.

What a processor folder may hold (:func:`context_manifest`, :func:`processor_folder`; each refusal
is :class:`~theoryx.errors.SpecError` naming the path):

- the folder, every directory from the spec file's directory down to it, and the Dockerfile are
  real, not symbolic links: a linked folder would pull files from outside the registry into the
  key and the image;
- inside it, regular files, directories and symbolic links only. A FIFO, socket or device is
  refused where the manifest would list it (reading a FIFO blocks forever; a socket cannot be
  opened); entries never looked at (``.git``, ``__pycache__``, and for an image what
  ``.dockerignore`` excludes) are not checked;
- names are valid UTF-8, the manifest being canonical JSON;
- a link is hashed as its target text, never followed, so it cannot pull in files from outside;
  for the mock environment, ``mock.py`` itself must be a regular file, since the mock adapter
  executes what it names.

Files are read by descriptor (opened without following links and without blocking, then checked
to be regular) and hashed in chunks of 1 MiB, so memory stays bounded whatever their size.

``.dockerignore`` is read as Docker reads it (moby's ``ignorefile`` and ``patternmatcher``): one
pattern a line, ``#`` lines are comments, patterns are trimmed and cleaned like paths (a leading
``/`` dropped) and match the path from the context root with Go's ``filepath.Match`` rules (``*``
and ``?`` within one directory, ``[...]`` classes, ``\`` escapes) plus ``**`` (any number of
directories); a pattern that matches a directory excludes everything below it; the last line
that matches a path (or a directory above it) decides, and a ``!`` line re-includes. So
``config.json`` is the top-level file only (``**/config.json`` is any), and ``*`` then
``!Dockerfile`` and ``!run.py`` keeps those two. ``Dockerfile`` and ``.dockerignore`` are kept
whatever it says, as Docker always sends them; a Dockerfile of another name that it excludes is
:class:`SpecError` (the build could not read it). A malformed pattern (``[``, a trailing ``\``,
``!`` alone), a ``.dockerignore`` that is a link or not a regular file is :class:`SpecError`.
``*.pyc`` files are left out whatever it says.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import blake3

from theoryx.core.canonical import canonical_bytes, digest
from theoryx.errors import SpecError
from theoryx.spec.model import ProcessorSpec

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_ALWAYS_EXCLUDED_DIRS = frozenset({"__pycache__", ".git"})
"""Directories (or links) of these names are never hashed, at any depth: Python's bytecode, which
it writes beside the sources it imports (the sources are hashed), and version control data."""
IMAGE_VENDOR_DIR = "vendor"
"""The top-level directory an image context leaves out: the build adds its own ``vendor/``, the
packages installed from ``requirements.txt`` (which is hashed). The mock environment hashes it."""
BASE_IMAGE_ENV = "THEORYX_BASE_IMAGE"
_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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


DOCKERIGNORE = ".dockerignore"
DOCKERIGNORE_MAX_BYTES = 1 << 20
_ALWAYS_SENT = frozenset({DOCKERIGNORE, "Dockerfile"})
"""Kept whatever ``.dockerignore`` says, as Docker always sends them: the build needs them."""
_REGEX_SPECIAL = frozenset(".+()|{}$")
_Rule = tuple[bool, "Callable[[str], bool]"]     # (is an exclusion "!pattern", matches a path)
_RULES: dict[bytes, list[_Rule]] = {}            # .dockerignore text -> its compiled rules


def _clean(pattern: str) -> str:
    """Go's ``filepath.Clean`` on a slash path."""
    cleaned = posixpath.normpath(pattern)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _char_class(p: str, pos: int) -> tuple[str, int]:
    """The Python regex of the ``filepath.Match`` character class starting after the ``[`` at
    ``pos - 1``, and the position after its ``]``; ValueError where Go reports ErrBadPattern."""
    out = ["["]
    if pos < len(p) and p[pos] == "^":
        out.append("^")
        pos += 1
    count = 0
    while True:
        if pos < len(p) and p[pos] == "]" and count:
            return "".join(out) + "]", pos + 1
        lo, pos = _class_char(p, pos)
        out.append(re.escape(lo))
        if pos < len(p) and p[pos] == "-":
            hi, pos = _class_char(p, pos + 1)
            out.append("-" + re.escape(hi))
        count += 1


def _class_char(p: str, pos: int) -> tuple[str, int]:
    if pos >= len(p) or p[pos] in "-]":
        raise ValueError("bad character class")
    if p[pos] == "\\":
        pos += 1
        if pos >= len(p):
            raise ValueError("a trailing \\ in a character class")
    return p[pos], pos + 1


def _compile(p: str) -> Callable[[str], bool]:
    """A matcher of slash paths for one cleaned pattern, as moby's ``patternmatcher`` compiles
    it: ``*`` and ``?`` never match ``/``; ``**`` matches any number of directories (``**/`` at
    the start also none: ``**/x`` matches ``x``), and at the end everything below; ``[...]`` and
    ``\\`` escapes as in Go's ``filepath.Match``. A pattern without wildcards matches the path
    exactly. ValueError for a pattern Docker refuses."""
    regex: list[str] = []
    kind = "exact"
    pos = count = 0
    while pos < len(p):
        ch = p[pos]
        pos += 1
        if ch == "*":
            if pos < len(p) and p[pos] == "*":
                pos += 1
                if pos < len(p) and p[pos] == "/":
                    pos += 1
                if pos >= len(p):
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex.append(".*")
                        kind = "regexp"
                else:
                    regex.append("(?:.*/)?")
                    kind = "regexp"
                if count == 0:
                    kind = "suffix"
            else:
                regex.append("[^/]*")
                kind = "regexp"
        elif ch == "?":
            regex.append("[^/]")
            kind = "regexp"
        elif ch == "\\":
            if pos >= len(p):
                raise ValueError("a trailing \\")
            regex.append(re.escape(p[pos]))
            pos += 1
            kind = "regexp"
        elif ch == "[":
            text, pos = _char_class(p, pos)
            regex.append(text)
            kind = "regexp"
        else:
            regex.append("\\" + ch if ch in _REGEX_SPECIAL else re.escape(ch))
        count += 1
    if kind == "exact":
        return p.__eq__
    if kind == "prefix":            # "abc**": every path starting with "abc"
        start = p[:-2]
        return lambda path: path.startswith(start)
    if kind == "suffix":            # "**" first: suffix match, and "**/x" matches "x"
        end = p[2:]
        return lambda path: path.endswith(end) or (end[:1] == "/" and path == end[1:])
    compiled = re.compile("".join(regex))
    return lambda path: compiled.fullmatch(path) is not None


def _read_dockerignore(folder: Path) -> bytes | None:
    """The bytes of ``folder/.dockerignore`` (None without one); a link, a special file or more
    than :data:`DOCKERIGNORE_MAX_BYTES` is :class:`SpecError`."""
    path = os.path.join(folder, DOCKERIGNORE)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror or exc}"
        raise _refuse(path, why + " (it must be a regular file)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, f"is {_kind(st.st_mode)} (it must be a regular file)")
        data = os.read(fd, DOCKERIGNORE_MAX_BYTES + 1)
    except OSError as exc:
        raise _refuse(path, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > DOCKERIGNORE_MAX_BYTES:
        raise _refuse(path, f"is larger than {DOCKERIGNORE_MAX_BYTES:,} bytes")
    return data


def _ignore_rules(folder: Path) -> list[_Rule]:
    """``.dockerignore``'s rules in order, read as Docker reads them (moby's ``ignorefile`` and
    ``patternmatcher``): one pattern a line; a line starting with ``#`` is a comment; surrounding
    whitespace is trimmed; ``!`` makes an exception (re-includes what earlier lines excluded);
    patterns are cleaned like paths and a leading ``/`` dropped, so they match the path from the
    context root (``config.json`` is the top-level file only: ``**/config.json`` is any)."""
    data = _read_dockerignore(folder)
    if not data:
        return []
    rules = _RULES.get(data)
    if rules is None:
        rules = parse_dockerignore(data, os.path.join(folder, DOCKERIGNORE))
        if len(_RULES) >= 64:
            _RULES.clear()
        _RULES[data] = rules
    return rules


def parse_dockerignore(data: bytes, path: str) -> list[_Rule]:
    """The rules of ``.dockerignore`` bytes (see :func:`_ignore_rules`); :class:`SpecError`
    naming ``path`` and the line for a pattern Docker refuses."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise _refuse(path, "is not UTF-8 text") from None
    rules: list[_Rule] = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        exclusion = pattern[0] == "!"
        if exclusion:
            pattern = pattern[1:].strip()
            if not pattern:
                raise _refuse(path, f"line {number}: '!' alone names no pattern (Docker refuses it)")
        pattern = _clean(pattern)
        if len(pattern) > 1 and pattern[0] == "/":
            pattern = pattern[1:]
        try:
            rules.append((exclusion, _compile(pattern)))
        except (ValueError, re.error) as exc:
            raise _refuse(path, f"line {number}: the pattern {line.strip()!r} is malformed ({exc}); "
                                "Docker refuses it") from None
    return rules


def _excluded(rel: str, rules: list[_Rule]) -> bool:
    """Docker's ``MatchesOrParentMatches``: the last rule that matches ``rel`` or one of its parent
    directories decides (an exclusion rule re-includes)."""
    matched = False
    parents: list[str] | None = None
    for exclusion, match in rules:
        if exclusion != matched:        # only an exception can change an excluded path, and back
            continue
        hit = match(rel)
        if not hit and "/" in rel:
            if parents is None:
                parts = rel.split("/")[:-1]
                parents = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            hit = any(match(parent) for parent in parents)
        if hit:
            matched = not exclusion
    return matched


def _shown(path: str) -> str:
    """``path`` for a message: bytes that are not UTF-8 as escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _refuse(path: str, why: str) -> SpecError:
    return SpecError(f"{_shown(path)}: {why}")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _hash_file(path: str) -> dict[str, Any]:
    """The manifest entry of the regular file at ``path``: opened without following a link and
    without blocking (a FIFO put there since the folder was listed), checked regular on the
    descriptor, hashed up to the size it had then, 1 MiB at a time."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _refuse(path, f"cannot read this file of the processor folder: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, f"is {_kind(st.st_mode)}: a processor folder may hold only regular "
                                "files, directories and symbolic links")
        hasher = blake3.blake3()
        remaining = st.st_size
        while remaining:
            chunk = os.read(fd, min(remaining, _CHUNK))
            if not chunk:
                break       # truncated meanwhile: what was read is what is hashed
            hasher.update(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise _refuse(path, f"cannot read this file of the processor folder: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return {"cid": "b3:" + hasher.hexdigest(), "size": st.st_size - remaining,
            "exec": bool(st.st_mode & 0o111)}


def link_bytes(target: str) -> bytes:
    """What a context manifest hashes for a symbolic link to ``target`` (its text, never followed)."""
    return b"symlink:" + os.fsencode(target)


def _link_entry(path: str) -> dict[str, Any]:
    try:
        data = link_bytes(os.readlink(path))
    except OSError as exc:
        raise _refuse(path, f"cannot read this link of the processor folder: {exc.strerror or exc}") from None
    return {"cid": digest(data), "size": len(data), "exec": False}


def context_manifest(folder: Path, *, dockerignore: bool = True) -> ContextManifest:
    """Hash every file of ``folder`` (deterministic; no link followed: a link is hashed as its
    target text, so it can't pull in files from outside). With ``dockerignore`` (an image's
    build context) ``.dockerignore`` patterns and the top-level ``vendor/`` are left out;
    ``dockerignore=False`` is the mock environment's view: all of the folder, ``mock.py``
    (which images ignore) included, and it must not be a link. Always left out: ``*.pyc``,
    ``__pycache__`` and ``.git``. A folder that does not exist (or is no directory) has no files.
    :class:`SpecError` for a folder that is a link, a FIFO, socket or device among the files
    hashed, a name that is not UTF-8, or a file that cannot be read (see the module docstring)."""
    files: dict[str, dict[str, Any]] = {}
    top = os.fspath(folder)
    try:
        st = os.lstat(top)
    except (FileNotFoundError, NotADirectoryError):
        return ContextManifest(files)
    except OSError as exc:
        raise _refuse(top, f"cannot read the processor folder: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(top, "the processor folder is a symbolic link: it must be a directory inside "
                           "the registry (a link would pull files from outside into the key and the image)")
    if not stat.S_ISDIR(st.st_mode):
        return ContextManifest(files)
    rules = _ignore_rules(folder) if dockerignore else []
    prune = not any(exclusion for exclusion, _ in rules)    # no "!": an excluded directory stays so
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        where = os.path.join(top, rel_dir) if rel_dir else top
        try:
            with os.scandir(where) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            raise _refuse(where, f"cannot list this directory of the processor folder: {exc.strerror or exc}") from None
        for entry in entries:
            name = entry.name
            if not name.isascii():
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    raise _refuse(entry.path, "the name is not valid UTF-8: rename the file (names in "
                                              "a processor folder enter the key as JSON text)") from None
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
                is_file = not is_link and not is_dir and entry.is_file(follow_symlinks=False)
            except OSError as exc:
                raise _refuse(entry.path, f"cannot read this entry: {exc.strerror or exc}") from None
            if (is_dir or is_link) and (name in _ALWAYS_EXCLUDED_DIRS or
                                        (dockerignore and not rel_dir and name == IMAGE_VENDOR_DIR)):
                continue
            if is_dir:
                if not (rules and prune and _excluded(rel, rules)):
                    pending.append(rel)
                continue
            if name.endswith(".pyc") or (rules and _excluded(rel, rules) and rel not in _ALWAYS_SENT):
                continue
            if is_link:
                if not dockerignore and rel == "mock.py":
                    raise _refuse(entry.path, "mock.py is a symbolic link: the mock adapter runs the "
                                              "file it names, which the key would not cover; make it a file")
                files[rel] = _link_entry(entry.path)
            elif is_file:
                files[rel] = _hash_file(entry.path)
            else:
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError:
                    mode = 0
                raise _refuse(entry.path, f"is {_kind(mode)}: a processor folder may hold only regular "
                                          "files, directories and symbolic links")
    return ContextManifest(files)


def processor_folder(spec: ProcessorSpec) -> Path:
    """``spec.folder``, checked to be inside the registry: the spec file's directory, every
    directory from it down to the folder and the Dockerfile must not be symbolic links (the
    Dockerfile path has no ``..``, which the spec parser refuses). A part that does not exist
    ends the check (the folder then has no files). :class:`SpecError` naming the field and the link."""
    base = spec.source.parent
    if spec.image.dockerfile:
        fld, parts = "image.dockerfile", Path(spec.image.dockerfile).parts
    else:
        fld, parts = "ref", (spec.ref.name,)
    current = base
    for part in ("", *parts):
        current = current / part if part else current
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            break
        except OSError as exc:
            raise SpecError(f"{spec.source}: field '{fld}': cannot read {current}: {exc.strerror or exc}") from None
        if stat.S_ISLNK(st.st_mode):
            raise SpecError(f"{spec.source}: field '{fld}': {current} is a symbolic link: a processor's "
                            "folder, the directories above it in the registry and its Dockerfile must "
                            "not be links (a link would pull files from outside the registry into the "
                            "key and the image)")
    return spec.folder


REQUIREMENTS = "requirements.txt"


def _check_requirements(spec: ProcessorSpec, folder: Path, manifest: ContextManifest) -> None:
    """A folder's ``requirements.txt`` is installed into its image (``vendor/``), so the key must
    hold its bytes: it must be a regular file in the build context. :class:`SpecError` for one
    that is a link (its text, not the requirements, would be keyed) or that ``.dockerignore``
    excludes (the image would be built without it, silently)."""
    path = folder / REQUIREMENTS
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise _refuse(os.fspath(path), f"cannot read it: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SpecError(f"{spec.source}: {path} is a symbolic link: theoryx installs a processor's "
                        "requirements.txt into its image and keys its bytes, so it must be a regular file")
    if REQUIREMENTS not in manifest.files:
        raise SpecError(f"{spec.source}: {path} is excluded by {folder / DOCKERIGNORE}: theoryx installs "
                        "it into the image, so it must be in the build context (remove the pattern, or "
                        f"add the line '!{REQUIREMENTS}' at its end)")


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
    folder = processor_folder(spec)
    if env_class == "mock":
        manifest = context_manifest(folder, dockerignore=False)
        return {"kind": "mock", "context": manifest.cid}, manifest
    manifest = context_manifest(folder)
    if spec.image.ref is not None:
        return {"kind": "ref", "ref": spec.image.ref}, manifest
    name = Path(spec.image.dockerfile or "Dockerfile").name
    if name not in manifest.files:      # "Dockerfile" always is (_ALWAYS_SENT)
        raise SpecError(f"{spec.source}: field 'image.dockerfile': {name} is excluded by "
                        f"{spec.folder / DOCKERIGNORE}, so the build could not read it: add the line "
                        f"'!{name}' at its end")
    _check_requirements(spec, folder, manifest)
    return {
        "kind": "dockerfile",
        "dockerfile": name,
        "context": manifest.cid,
        "build_args": build_args(spec),
    }, manifest


def check(spec: ProcessorSpec) -> None:
    """What ``registry validate`` checks of a spec beyond its file: its folder and files, as the
    mock environment and an image would hash them (:class:`SpecError` as in a run)."""
    image_identity(spec, "mock")
    image_identity(spec, "container")


def env_identity(env_class: str) -> dict[str, str]:
    """The execution environment class: mock results never share keys with container ones."""
    if env_class == "mock":
        return {"class": "mock"}
    if env_class == "modal":
        # revision 2: the processor runs with exactly the image's ENV, the contract and the secrets
        # (BUILD.md section 9); results of the earlier runner never answer these runs
        return {"class": env_class, "platform": platform_name(), "revision": "2"}
    return {"class": env_class, "platform": platform_name()}
