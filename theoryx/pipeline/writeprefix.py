"""The write prefix: where a run's outputs appear in the world namespace."""

from __future__ import annotations

from theoryx.errors import WritePrefixError

DEFAULT = "/artifacts/outputs/"
PLACEHOLDER = "{execution_id}"
_RESERVED = ("/artifacts/inputs/", "/artifacts/execution/")
EXECUTION_ID_LENGTH = 26
NAME_MAX = 255
"""The longest segment: the container's directory at the prefix is mounted there (Linux's NAME_MAX;
a longer one failed every local run as an engine error)."""
PATH_MAX = 1024
"""The longest prefix, expanded: room is left below it for the outputs' own paths."""


def check(prefix: str) -> None:
    """Validate the unexpanded prefix: :class:`WritePrefixError` names the ``write_prefix``
    parameter (the CLI prints it as ``--write-prefix``)."""
    if not prefix.startswith("/artifacts/"):
        raise WritePrefixError("write_prefix must start with /artifacts/")
    if not prefix.endswith("/"):
        raise WritePrefixError("write_prefix must end with /")
    segments = prefix[len("/artifacts/"):-1].split("/")
    if prefix == "/artifacts/":
        raise WritePrefixError("write_prefix must name a directory below /artifacts/")
    if any(s == "" for s in segments):
        raise WritePrefixError("write_prefix must not contain empty segments (//)")
    if any(s in (".", "..") for s in segments):
        raise WritePrefixError("write_prefix must not contain . or .. segments")
    if any(c in prefix for c in "\\\0\n"):
        raise WritePrefixError("write_prefix must not contain backslashes, NUL or newlines")
    if prefix.startswith(_RESERVED):
        raise WritePrefixError("write_prefix must not be inside /artifacts/inputs/ or /artifacts/execution/")
    expanded = prefix.replace(PLACEHOLDER, "x" * EXECUTION_ID_LENGTH)
    if any(len(seg.encode("utf-8", "surrogatepass")) > NAME_MAX for seg in expanded.split("/")):
        raise WritePrefixError(f"write_prefix must not have a segment longer than {NAME_MAX} bytes "
                               "(no directory of a container can be named so)")
    if len(expanded.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise WritePrefixError(f"write_prefix must be at most {PATH_MAX} bytes long")
    rest = prefix.replace(PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise WritePrefixError("write_prefix may only use the placeholder {execution_id}")


def expand(prefix: str, execution_id: str) -> str:
    """Check ``prefix`` and replace ``{execution_id}``."""
    check(prefix)
    return prefix.replace(PLACEHOLDER, execution_id)
