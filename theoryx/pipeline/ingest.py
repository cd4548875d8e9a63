"""Ingesting a run's output directory into the CAS, safely.

Walks without following links (``lstat`` only) and rejects anything but plain directories and
regular files: symlinks, hard links (``st_nlink > 1``), devices, FIFOs, sockets, setuid/setgid
files and names that are not clean UTF-8 are :class:`OutputRejected` naming the path. Caps on file
count, total bytes and depth apply before anything is stored. Nothing outside the directory is
ever read. Files are moved into the CAS after hashing where the filesystem allows.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cas import Store
from theoryx.core.canonical import canonical_bytes
from theoryx.errors import OutputMissing, OutputRejected
from theoryx.pipeline.attachments import guess_mime
from theoryx.spec.model import UNCLEAN_NAME, OutputLimits, ProcessorSpec
from theoryx.store.action_cache import OutputEntry


@dataclass(frozen=True)
class Manifest:
    """The outputs of one execution, sorted by world path, and the manifest blob's cid."""

    outputs: tuple[OutputEntry, ...]
    cid: str


MAX_WORLD_PATH = 480
"""The most UTF-8 bytes an output's world path may have (the store indexes world paths as LMDB
keys, which hold at most 511)."""
_UNCLEAN = UNCLEAN_NAME
"""What an output's name may not hold (:data:`theoryx.spec.model.UNCLEAN_NAME`)."""


def _walk(root: Path, limits: OutputLimits, prefix: str) -> list[tuple[str, Path, int]]:
    """``(relpath, host path, size)`` of every regular file, checked; raises on anything else."""
    found: list[tuple[str, Path, int]] = []
    total = 0
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    while stack:
        directory, rel_dir, depth = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_dir}{entry.name}"
            where = prefix + rel
            if _UNCLEAN.search(entry.name):
                raise OutputRejected(f"output {where!r} rejected: control characters, line separators or "
                                     "backslash in its name")
            try:
                encoded = len(where.encode("utf-8"))
            except UnicodeEncodeError:
                raise OutputRejected(f"output {where!r} rejected: its name is not valid UTF-8") from None
            if encoded > MAX_WORLD_PATH:
                raise OutputRejected(f"output {where[:120]!r}... rejected: its world path is {encoded} bytes, more "
                                     f"than {MAX_WORLD_PATH}")
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                raise OutputRejected(f"output {where} rejected: symbolic links are not allowed")
            if stat.S_ISDIR(mode):
                if depth + 1 >= limits.max_depth:
                    raise OutputRejected(f"output {where} rejected: deeper than {limits.max_depth} levels")
                stack.append((Path(entry.path), rel + "/", depth + 1))
                continue
            if not stat.S_ISREG(mode):
                kind = ("device" if stat.S_ISBLK(mode) or stat.S_ISCHR(mode) else
                        "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "special file")
                raise OutputRejected(f"output {where} rejected: a {kind} is not a regular file")
            if mode & (stat.S_ISUID | stat.S_ISGID):
                raise OutputRejected(f"output {where} rejected: setuid/setgid files are not allowed")
            if st.st_nlink > 1:
                raise OutputRejected(f"output {where} rejected: hard links are not allowed")
            total += st.st_size
            found.append((rel, Path(entry.path), st.st_size))
            if len(found) > limits.max_files:
                raise OutputRejected(f"outputs rejected: more than {limits.max_files} files")
            if total > limits.max_bytes:
                raise OutputRejected(f"outputs rejected: more than {limits.max_bytes} bytes in total")
    return sorted(found)


def ingest(outdir: Path, spec: ProcessorSpec, write_prefix: str, cas: Store, *, move: bool = True) -> Manifest:
    """Check and store every file under ``outdir``; declared non-optional outputs must exist.
    Returns the manifest (its blob is stored too). ``move`` False copies the files into the store
    instead of moving them: for a process that keeps running (a persistent worker), which may
    still hold a file open for writing, so that the stored blob is never that file."""
    files = _walk(outdir, spec.limits, write_prefix)
    present = {rel for rel, _, _ in files}
    missing = [o.path for o in spec.outputs if not o.optional and o.path not in present]
    if missing:
        raise OutputMissing(
            "processor did not write declared output(s): " + ", ".join(write_prefix + m for m in missing)
        )
    declared = {o.path: o.mime for o in spec.outputs}
    entries = []
    for rel, path, _ in files:
        blob = cas.put_file(path, move=move)
        entries.append(OutputEntry(write_prefix + rel, blob.cid, blob.size, declared.get(rel) or guess_mime(rel)))
    entries.sort(key=lambda e: e.path)
    body = {"version": 1, "write_prefix": write_prefix, "outputs": [e.to_dict() for e in entries]}
    manifest = cas.put_bytes(canonical_bytes(body))
    return Manifest(tuple(entries), manifest.cid)
