"""Processor refs: ``ns/name@version``.

Each part is at most :data:`MAX_PART` (100) characters: a ref names files (``<ns>/<name>@<version>.yaml``,
whose name must fit the 255 bytes a file name may have) and image tags (``theoryx/<ns>-<name>``,
at most 255 characters for Docker), so a longer one is refused as ``ERR_REF`` before any of them
is looked up (a 300-character name failed the file lookup with ENAMETOOLONG as ``ERR_INTERNAL``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from theoryx.errors import RefError

MAX_PART = 100
"""The most characters a ref's namespace, name or version may have."""
_REF = re.compile(r"^([a-z0-9][a-z0-9._-]{0,99})/([a-z0-9][a-z0-9._-]{0,99})@([A-Za-z0-9][A-Za-z0-9._-]{0,99})\Z")


@dataclass(frozen=True, order=True)
class Ref:
    """A processor's name and version. ``str(ref)`` is the canonical spelling."""

    ns: str
    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse ``ns/name@version``; raise :class:`RefError` naming the expected form."""
        m = _REF.match(text)
        if m is None:
            raise RefError(      # a long ref is clipped by the error itself (errors.clipped)
                f"invalid processor ref {text!r}: expected ns/name@version "
                f"(lowercase letters, digits, '.', '_' or '-', at most {MAX_PART} characters each), "
                "e.g. llm/litellm@1"
            )
        return cls(m.group(1), m.group(2), m.group(3))

    def __str__(self) -> str:
        return f"{self.ns}/{self.name}@{self.version}"

    @property
    def relpath(self) -> str:
        """Where the spec lives below a registry's ``processors/`` directory (without suffix)."""
        return f"{self.ns}/{self.name}@{self.version}"
