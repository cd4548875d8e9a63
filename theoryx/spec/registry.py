"""Finding and loading processor specs.

Search path: ``--registry``/``THEORYX_REGISTRY`` (``os.pathsep``-separated), else ``./registry``
when present, else the registry installed with the package. A registry root holds
``processors/<ns>/<name>@<version>.yaml`` (a root may also be given as the ``processors``
directory itself). Loading is cached by the YAML file's BLAKE3 hash in the ``specs`` database,
so a cache hit neither parses YAML nor checks schemas.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from theoryx.errors import ProcessorNotFound, SpecError
from theoryx.spec.model import ProcessorSpec
from theoryx.spec.refs import Ref
from theoryx.store.db import Database

SPEC_CACHE_VERSION = "1"


def installed_registry() -> Path:
    """The registry shipped inside the package, the ``theoryx._registry`` package (the source
    tree's ``registry/``): located through the import system, so it works from a wheel and from
    an editable install whose finder maps the package to ``registry/``."""
    import importlib.resources  # only here: costs ~2 ms and most runs find ./registry first

    return Path(str(importlib.resources.files("theoryx._registry")))


def search_path(explicit: str | None = None) -> tuple[Path, ...]:
    """The registries to search, in order."""
    text = explicit or os.environ.get("THEORYX_REGISTRY")
    if text:
        return tuple(Path(p).expanduser() for p in text.split(os.pathsep) if p)
    local = Path("registry")
    if (local / "processors").is_dir():
        return (local.resolve(),)
    return (installed_registry(),)


def _processors_dir(root: Path) -> Path:
    return root / "processors" if (root / "processors").is_dir() else root


@dataclass(frozen=True)
class Registry:
    """An ordered list of registry roots."""

    roots: tuple[Path, ...]

    @classmethod
    def from_option(cls, explicit: str | None = None) -> Registry:
        return cls(search_path(explicit))

    def locate(self, ref: Ref) -> Path:
        """The YAML file for ``ref``; :class:`ProcessorNotFound` names every root searched."""
        for root in self.roots:
            base = _processors_dir(root) / ref.relpath
            for suffix in (".yaml", ".yml"):
                path = base.with_name(base.name + suffix)
                if path.is_file():
                    return path
        searched = ", ".join(str(_processors_dir(r)) for r in self.roots)
        raise ProcessorNotFound(f"processor {ref} not found in registries: {searched}")

    def load(self, ref: Ref, db: Database | None = None) -> ProcessorSpec:
        """Load and validate ``ref``'s spec, using the parsed-spec cache in ``db`` when given."""
        return load_file(self.locate(ref), db, expect=ref)

    def refs(self) -> Iterator[tuple[Ref, Path]]:
        """Every spec file's ref (derived from its place) and path, first root wins."""
        seen: set[Ref] = set()
        for root in self.roots:
            pdir = _processors_dir(root)
            if not pdir.is_dir():
                continue
            for path in sorted(pdir.glob("*/*.y*ml")):
                try:
                    ref = Ref.parse(f"{path.parent.name}/{path.stem}")
                except Exception:
                    continue
                if ref not in seen:
                    seen.add(ref)
                    yield ref, path


def load_file(path: Path, db: Database | None = None, *, expect: Ref | None = None) -> ProcessorSpec:
    """Parse ``path`` (or take it from the spec cache by content hash) into a spec."""
    data = path.read_bytes()
    key = f"{SPEC_CACHE_VERSION}:{blake3.blake3(data).hexdigest()}:{path.resolve()}"
    cached = db.get("specs", key) if db is not None else None
    if cached is not None:
        return ProcessorSpec.from_cache(cached, path)
    spec = parse(data, path)
    if expect is not None and spec.ref != expect:
        raise SpecError(f"{path}: field 'ref': says {spec.ref} but the file's place means {expect}")
    if db is not None:
        db.put("specs", key, spec.to_cache())
    return spec


def parse(data: bytes, path: Path) -> ProcessorSpec:
    """Parse YAML bytes into a validated spec (no cache)."""
    import yaml  # only on a spec-cache miss

    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return ProcessorSpec.from_mapping(raw, path)
