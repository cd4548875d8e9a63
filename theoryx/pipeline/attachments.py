"""``--attach name=path``: hash and store attachment files and rewrite ``{"$attach": name}`` objects.

Every object ``{"$attach": "name"}`` anywhere in the inputs becomes
``{"$artifact": "/artifacts/inputs/<cid>/<basename>", "cid": "b3:...", "mime": "...", "size": N}``.
Host paths never enter the inputs (and so never the memo key).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cas import BlobNotFound, Store, hash_file
from theoryx.errors import AttachmentError, AttachmentNotFound, StoreFull

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

INPUTS_ROOT = "/artifacts/inputs/"


@dataclass(frozen=True)
class Attachment:
    """A stored attachment: its name on the command line, file name, cid, size and mime."""

    name: str
    filename: str
    cid: str
    size: int
    mime: str

    @property
    def world_path(self) -> str:
        return f"{INPUTS_ROOT}{self.cid}/{self.filename}"

    def artifact(self) -> dict[str, Any]:
        return {"$artifact": self.world_path, "cid": self.cid, "mime": self.mime, "size": self.size}


def parse_options(values: Iterable[str]) -> dict[str, Path]:
    """``["a=path", ...]`` -> ``{"a": Path}``; usage errors for bad syntax or duplicate names."""
    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise AttachmentError(f"--attach expects name=path, got {value!r}")
        if name in out:
            raise AttachmentError(f"--attach name {name!r} given twice")
        out[name] = host_path(path)
    return out


def host_path(text: str) -> Path:
    """An attachment's path as given, ``~`` and ``~user`` expanded; left as written when there is
    no such user (or no home to expand to), as a shell leaves it: the file is then not found."""
    try:
        return Path(text).expanduser()
    except RuntimeError:        # "Could not determine home directory."
        return Path(text)


def guess_mime(filename: str) -> str:
    import mimetypes

    mime, _ = mimetypes.guess_type(filename, strict=False)
    return mime or "application/octet-stream"


def hash_files(options: dict[str, Path]) -> dict[str, Attachment]:
    """Hash each attachment file (nothing is stored); :class:`AttachmentNotFound` for a missing
    file, :class:`AttachmentError` for one without a usable name or path (a NUL byte in it)."""
    out: dict[str, Attachment] = {}
    for name, path in options.items():
        if not name:
            raise AttachmentError(f"an attachment needs a name (the file {path} has none)")
        if "\0" in str(path):      # no OS call takes it (ValueError: embedded null byte)
            raise AttachmentError(f"attachment {name!r}: the path {str(path)!r} holds a NUL byte; no file has "
                                  "such a name")
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                raise AttachmentNotFound(f"Attachment file not found: {path}") from None
            raise AttachmentError(f"attachment {name!r} cannot be read: {path}: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            raise AttachmentError(f"attachment {name!r} is a directory, not a file: {path} "
                                  "(attach one file; archive a folder first)")
        if not stat.S_ISREG(mode):
            raise AttachmentError(f"attachment {name!r} is not a regular file: {path} (a device, FIFO or "
                                  "socket has no fixed bytes to hash)")
        filename = os.path.basename(path)
        if filename in ("", ".", ".."):
            raise AttachmentError(f"attachment {name!r} has no usable file name: {path}")
        try:
            filename.encode("utf-8")
        except UnicodeEncodeError:      # it would be in the inputs, which are JSON
            raise AttachmentError(f"attachment {name!r}: the file name {filename!r} is not UTF-8; link or copy "
                                  "the file under a UTF-8 name") from None
        try:
            blob = hash_file(path)
        except FileNotFoundError:
            raise AttachmentNotFound(f"Attachment file not found: {path}") from None
        except OSError as exc:
            raise AttachmentError(f"attachment {name!r} cannot be read: {path}: {exc.strerror}") from None
        out[name] = Attachment(name, filename, blob.cid, blob.size, guess_mime(filename))
    return out


def store_files(sources: Iterable[tuple[str, Path]], cas: Store) -> None:
    """Make each ``(cid, path)`` present in the CAS: refresh a blob already there (like git, so
    gc's grace period protects it), else copy the file in. The caller leases the cids first.
    A file that changed since it was hashed is an :class:`AttachmentError` (the key named the old
    bytes), and its copy is not kept under the new name's key."""
    for cid, path in sources:
        try:
            cas.touch(cid)
            continue
        except BlobNotFound:  # absent, or withdrawn by a concurrent gc a moment ago: store it
            pass
        try:
            blob = cas.put_file(path)
        except FileNotFoundError:
            raise AttachmentNotFound(f"Attachment file not found: {path}") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            import shutil

            free = shutil.disk_usage(cas.root).free
            raise StoreFull(f"no space to store attachment {path} ({path.stat().st_size} bytes) in "
                            f"{cas.root} ({free} bytes free): free space or point THEORYX_HOME "
                            "elsewhere, then run again (the partial copy was removed)") from None
        if blob.cid != cid:
            raise AttachmentError(f"attachment {path} changed while theoryx was running; run again")


def rewrite(value: Any, attachments: dict[str, Attachment], used: set[str] | None = None) -> Any:
    """Replace every ``{"$attach": name}`` (a one-key object) in ``value``; records names in ``used``."""
    if isinstance(value, dict):
        if set(value) == {"$attach"}:
            name = value["$attach"]
            if not isinstance(name, str) or name not in attachments:
                given = ", ".join(sorted(attachments)) or "none"
                raise AttachmentError(
                    f"inputs reference attachment {name!r} but none of that name was given (given: {given}; "
                    f'`run --attach {name}=PATH`, or `"attach": {{"{name}": "PATH"}}` in a `map` item)'
                )
            if used is not None:
                used.add(name)
            return attachments[name].artifact()
        return {k: rewrite(v, attachments, used) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, attachments, used) for v in value]
    return value


def referenced_artifacts(value: Any) -> list[dict[str, Any]]:
    """Every ``$artifact`` object in rewritten inputs (what the adapter must materialise)."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if "$artifact" in value and "cid" in value:
            found.append(value)
        else:
            for v in value.values():
                found.extend(referenced_artifacts(v))
    elif isinstance(value, list):
        for v in value:
            found.extend(referenced_artifacts(v))
    return found
