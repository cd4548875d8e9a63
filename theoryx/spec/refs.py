"""Processor refs: ``ns/name@version``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from theoryx.errors import RefError

_REF = re.compile(r"^([a-z0-9][a-z0-9._-]*)/([a-z0-9][a-z0-9._-]*)@([A-Za-z0-9][A-Za-z0-9._-]*)\Z")


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
            raise RefError(
                f"invalid processor ref {text!r}: expected ns/name@version "
                "(lowercase letters, digits, '.', '_' or '-'), e.g. llm/litellm@1"
            )
        return cls(m.group(1), m.group(2), m.group(3))

    def __str__(self) -> str:
        return f"{self.ns}/{self.name}@{self.version}"

    @property
    def relpath(self) -> str:
        """Where the spec lives below a registry's ``processors/`` directory (without suffix)."""
        return f"{self.ns}/{self.name}@{self.version}"
