"""What a run is asked: one :class:`RunRequest`, built by the CLI, the Python API and audits alike."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from theoryx.core.frozen import replaced
from theoryx.errors import AdapterOptionsError, AttachmentError, InputsError, RefError, UsageError
from theoryx.pipeline import writeprefix

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)

if TYPE_CHECKING:
    from typing import Any

    from theoryx.adapters.base import Workers

StreamFn = Callable[[str, bytes], None]
"""Live output: called with ``("stdout" | "stderr", chunk)`` while a processor runs (a hit
replays its stored stdout once)."""

DEFAULT_ADAPTER = "local"
MAX_INPUT_DEPTH = 100
"""How deeply inputs (and adapter options) may nest: objects and arrays, counted from 1.
Deeper values are refused with ``ERR_INPUTS`` before anything recursive touches them."""


def check_depth(value: Any, what: str = "inputs", limit: int = MAX_INPUT_DEPTH) -> None:
    """:class:`InputsError` if ``value`` nests objects/arrays deeper than ``limit`` (iterative:
    no recursion, whatever the depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise InputsError(f"{what} is nested deeper than {limit} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


@dataclass(frozen=True)
class RunRequest:
    """Everything one run was asked. ``attachments`` maps names to host paths; ``inputs`` may
    reference them as ``{"$attach": name}``. ``adapter_options`` never enter the memo key."""

    ref: str
    inputs: Any = field(default_factory=dict)
    attachments: Mapping[str, Path] = field(default_factory=dict)
    adapter: str = DEFAULT_ADAPTER
    plan: str | None = None
    write_prefix: str = writeprefix.DEFAULT
    seed: int = 0
    salt: str = ""
    no_cache: bool = False
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    registry: str | None = None
    stream: StreamFn | None = None
    build: bool = False
    remote: str | None = None             # team cache URL; None: THEORYX_REMOTE, else <home>/remote.json
    workers: Workers | None = field(default=None, compare=False, repr=False)   # a batch's persistent workers

    @classmethod
    def of(cls, ref: str, **options: Any) -> RunRequest:
        """A request from Python keyword arguments: ``None`` means the default, paths may be
        strings. Unknown keywords raise ``TypeError`` as a call would; a value of the wrong type
        (a ref that is no string, attachments that do not map names to paths, adapter options
        that are no mapping, a ``stream`` that is not callable, ``no_cache``/``build`` that are
        not booleans) raises a :class:`UsageError` subclass, before anything is recorded."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
        if not isinstance(ref, str):
            raise RefError(f"ref must be a string (ns/name@version), got {_shown(ref)}")
        given = {k: v for k, v in options.items() if v is not None or k in ("plan", "registry", "stream")}
        if "registry" in given:
            given["registry"] = path_arg("registry", given["registry"])
        for name in ("plan", "remote", "salt", "write_prefix", "adapter"):
            if given.get(name) is not None and not isinstance(given[name], str):
                raise UsageError(f"{name} must be a string, got {_shown(given[name])}")
        for name in ("salt", "write_prefix"):   # a plan key, an adapter name, a remote: refused or warned as such
            if isinstance(given.get(name), str):
                check_unicode(name, given[name])
        for name in ("no_cache", "build"):
            if name in given and not isinstance(given[name], bool):
                raise UsageError(f"{name} must be True or False, got {_shown(given[name])}")
        if given.get("stream") is not None and not callable(given["stream"]):
            raise UsageError(f"stream must be a callable (stream, chunk) -> None, got {_shown(given['stream'])}")
        seed = given.get("seed")
        if not isinstance(seed, int | None) and hasattr(type(seed), "__index__"):
            given["seed"] = operator.index(seed)    # numpy's integers and the like: their value
        if "attachments" in given:
            given["attachments"] = _attachments(given["attachments"])
        if "adapter_options" in given:
            if not isinstance(given["adapter_options"], Mapping):
                raise AdapterOptionsError(f"adapter_options must be a mapping of option names to values, "
                                          f"got {_shown(given['adapter_options'])}")
            given["adapter_options"] = dict(given["adapter_options"])
        return cls(ref=ref, **given)

    def for_item(self, inputs: Any, attachments: Mapping[str, Path]) -> RunRequest:
        """This request with other ``inputs`` and ``attachments`` (as :func:`dataclasses.replace`,
        without re-running ``__init__``: a batch makes one per item, thousands per second)."""
        return replaced(self, {"inputs": inputs, "attachments": attachments})


def check_unicode(name: str, text: str) -> None:
    """:class:`UsageError` if ``text`` (the setting ``name``) holds a lone surrogate, as a
    command line's bytes that are not UTF-8 become: no record could store it (the run failed as
    "inputs have no canonical JSON form", though the inputs were fine)."""
    if not _is_unicode(text):
        raise UsageError(f"{name} must be valid Unicode text (it holds a lone surrogate): {text[:40]!r}",
                         option=name)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any) -> str:
    """A wrong value for a message: its type and the start of its text."""
    return f"{type(value).__name__} {str(value)[:40]!r}"


def _attachments(given: Any) -> dict[str, Path]:
    """``attachments`` as names to paths (a path may be a string): :class:`AttachmentError` for
    anything else."""
    if not isinstance(given, Mapping):
        raise AttachmentError(f"attachments must map names to file paths, got {_shown(given)}")
    out: dict[str, Path] = {}
    for name, path in given.items():
        if not isinstance(name, str) or not name:
            raise AttachmentError(f"attachment names must be non-empty strings, got {_shown(name)}")
        if not isinstance(path, str | os.PathLike):
            raise AttachmentError(f"attachment {name!r} must be a file path (a string or a Path), got {_shown(path)}")
        try:
            out[name] = Path(path)
        except TypeError as exc:    # a PathLike whose path is bytes
            raise AttachmentError(f"attachment {name!r} must be a file path (a string or a Path): {exc}") from None
    return out


def path_arg(name: str, value: str | Path | None) -> str | None:
    """``value`` (a path) as a string, or None: :class:`UsageError` for an empty string, one
    holding a NUL, or anything that is no path (an int, bytes): ``home=""`` would have made the
    working directory a home."""
    if value is None:
        return None
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise UsageError(f"{name} must be a path (a string or a Path), got {type(value).__name__} "
                         f"{str(value)[:40]!r}")
    if not text or "\0" in text:
        raise UsageError(f"{name} must be a path (a string or a Path), got {text[:40]!r}")
    return text
