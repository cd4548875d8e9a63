"""Finding and loading processor specs.

Search path: ``--registry``/``THEORYX_REGISTRY`` (``os.pathsep``-separated), else ``./registry``
when present, else the registry installed with the package. A registry root holds
``processors/<ns>/<name>@<version>.yaml`` (a root may also be given as the ``processors``
directory itself). Loading is cached by the YAML file's BLAKE3 hash in the ``specs`` database,
so a cache hit neither parses YAML nor checks schemas.

Spec files are bounded before they are parsed, because a parsed spec is later serialised whole
(the spec cache, the spec digest, JSON Schema validation): a YAML alias makes a node shared, and
nine levels of nine aliases expand into 9**9 nodes when serialised (the "billion laughs"). So:

- a spec file holds at most :data:`SPEC_MAX_BYTES` (1 MiB) — the largest shipped spec is under
  2 KiB;
- YAML anchors (``&name``) and aliases (``*name``) are refused (:class:`_SpecLoader`), so the
  parsed tree has one node per node written in the file and its size is bounded by the file's;
- mappings and sequences nest at most :data:`SPEC_MAX_DEPTH` (64) deep, which also keeps the
  recursive YAML composer, the spec's validation and the canonical encoder far from Python's
  recursion limit;
- a spec has at most :data:`SPEC_MAX_NODES` (20,000) YAML nodes (keys, values and items; the
  shipped LLM spec has about 150): PyYAML holds some 1 KB per node while composing, so 1 MiB of
  ``[0,0,0,...]`` would otherwise take about 360 MB and 20 s to parse; bounded, it is refused
  after some 30 MB and 0.7 s.

Each refusal is :class:`~theoryx.errors.SpecError` (``ERR_SPEC``) naming the file and, for an
anchor, alias, nesting or node count, the field and its line.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from theoryx.errors import ProcessorNotFound, SpecError, UsageError
from theoryx.spec.model import ProcessorSpec
from theoryx.spec.refs import Ref
from theoryx.store.db import Database

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

# "2": entries cached before anchors and aliases were refused must not be served again.
# "3": nor those cached before every value had to have a canonical JSON form (an integer key
# cached by "2" failed every later run reading it back, as ERR_INTERNAL).
# "4": nor those cached before every $ref of the inputs schema had to resolve (one pointing
# nowhere failed every run as ERR_INTERNAL), nor before every declared output had to be one a run
# could produce (a clean name, declared once, no file below another).
# "5": nor those cached before runtime.memory had to be at least 6 MiB and runtime.cpu at least
# 0.01 (less passed validation and failed every local run as ERR_ADAPTER, or lifted the CPU limit).
# "6": nor those cached before a NUL character in a command argument or an env value was refused
# (no process can be given one: every local run failed as ERR_ADAPTER or "exec: invalid argument").
SPEC_CACHE_VERSION = "6"
SPEC_MAX_BYTES = 1 << 20
SPEC_MAX_DEPTH = 64
SPEC_MAX_NODES = 20_000


def installed_registry() -> Path:
    """The registry shipped inside the package, the ``theoryx._registry`` package (the source
    tree's ``registry/``): located through the import system, so it works from a wheel and from
    an editable install whose finder maps the package to ``registry/``."""
    import importlib.resources  # only here: costs ~2 ms and most runs find ./registry first

    return Path(str(importlib.resources.files("theoryx._registry")))


def search_path(explicit: str | os.PathLike[str] | None = None) -> tuple[Path, ...]:
    """The registries to search, in order (``explicit``: a directory, or several joined by
    ``os.pathsep``; else ``THEORYX_REGISTRY``; else ``./registry``; else the installed one)."""
    text = os.fspath(explicit) if explicit else os.environ.get("THEORYX_REGISTRY")
    if text:
        return tuple(_expanded(p) for p in text.split(os.pathsep) if p)
    local = Path("registry")
    if (local / "processors").is_dir():
        return (local.resolve(),)
    return (installed_registry(),)


def _expanded(entry: str) -> Path:
    """``entry`` with ``~`` expanded; :class:`UsageError` (not pathlib's ``RuntimeError``) when
    it cannot be: no such user, or no home directory."""
    try:
        return Path(entry).expanduser()
    except RuntimeError:        # "Could not determine home directory."
        raise UsageError(f"registry {entry[:200]!r} cannot be expanded (no such user, or no home directory "
                         "to expand ~ to): give the path in full", option="registry") from None


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False where the path cannot even be looked up (too long, no access)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _processors_dir(root: Path) -> Path:
    return root / "processors" if _is_dir(root / "processors") else root


@dataclass(frozen=True)
class Registry:
    """An ordered list of registry roots."""

    roots: tuple[Path, ...]

    @classmethod
    def from_option(cls, explicit: str | None = None) -> Registry:
        """The registries of ``--registry`` / ``THEORYX_REGISTRY`` (``os.pathsep``-separated;
        entries that do not exist are skipped, as in ``PATH``), else ``./registry``, else the
        installed one. :class:`~theoryx.errors.UsageError` when the setting names no existing
        directory at all: a typo must not read as an empty registry."""
        roots = search_path(explicit)
        if not any(_is_dir(root) for root in roots):
            from theoryx.errors import UsageError

            named = ", ".join(str(r) for r in roots) or "an empty list"
            raise UsageError(f"no registry: {named} is not an existing directory (set --registry or "
                             "THEORYX_REGISTRY to a registry directory)")
        return cls(roots)

    def locate(self, ref: Ref) -> Path:
        """The YAML file for ``ref``; :class:`ProcessorNotFound` names every root searched."""
        for root in self.roots:
            base = _processors_dir(root) / ref.relpath
            for suffix in (".yaml", ".yml"):
                path = base.with_name(base.name + suffix)
                try:
                    if path.is_file():
                        return path
                except OSError:     # a root whose path is too long, unreadable...: not found there
                    continue
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
            if not _is_dir(pdir):
                continue
            for path in sorted(pdir.glob("*/*.y*ml")):
                try:
                    ref = Ref.parse(f"{path.parent.name}/{path.stem}")
                except Exception:
                    continue
                if ref not in seen:
                    seen.add(ref)
                    yield ref, path


    def strays(self) -> Iterator[Path]:
        """Spec-like files no ref can find: a ``.yaml``/``.yml`` directly in ``processors/``, or
        one in a namespace directory whose name is not ``<name>@<version>`` (``p.yaml``,
        ``P@1.yaml``), or in a directory that is no valid namespace. Files deeper down belong to
        processor folders and are not looked at."""
        for root in self.roots:
            pdir = _processors_dir(root)
            if not _is_dir(pdir):
                continue
            for path in sorted([*pdir.glob("*.y*ml"), *pdir.glob("*/*.y*ml")]):
                if path.suffix not in (".yaml", ".yml") or not path.is_file():
                    continue
                if path.parent == pdir:
                    yield path
                    continue
                try:
                    Ref.parse(f"{path.parent.name}/{path.stem}")
                except Exception:
                    yield path


def load_file(path: Path, db: Database | None = None, *, expect: Ref | None = None) -> ProcessorSpec:
    """Parse ``path`` (or take it from the spec cache by content hash) into a spec. Reads at
    most :data:`SPEC_MAX_BYTES` + 1 bytes: a larger file is refused without reading it whole."""
    try:
        with open(path, "rb") as f:
            data = f.read(SPEC_MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec file: {exc.strerror or exc}") from None
    _check_size(data, path)
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
    """Parse YAML bytes into a validated spec (no cache). :class:`SpecError` for a file over
    :data:`SPEC_MAX_BYTES`, an anchor or alias, nesting deeper than :data:`SPEC_MAX_DEPTH`,
    invalid YAML or an invalid spec, naming ``path`` (and the field where there is one)."""
    import yaml  # only on a spec-cache miss

    _check_size(data, path)
    loader = _loader_class()(data, path)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return ProcessorSpec.from_mapping(raw, path)


def _check_size(data: bytes, path: Path) -> None:
    if len(data) > SPEC_MAX_BYTES:
        raise SpecError(f"{path}: the spec file is larger than {SPEC_MAX_BYTES:,} bytes (1 MiB), "
                        "the most a spec may be; move large schemas or data out of the spec")


@functools.cache
def _loader_class() -> Any:
    """:class:`_SpecLoader`, defined on first use so that importing this module (on every run,
    hits included) never imports yaml."""
    import yaml
    from yaml.events import AliasEvent

    class _SpecLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` (the pure-Python one: the C loader composes nodes in C, out of
        reach of these checks; a spec is parsed once per content, then served from the cache)
        that refuses anchors and aliases and bounds the nesting and the node count, naming the
        field where it happens. Checked in ``compose_node``, before an alias is resolved or a node built."""

        def __init__(self, data: bytes, path: Path) -> None:
            super().__init__(data)
            self.spec_path = path
            self.fields: list[str] = []   # the path from the document's root to the current node
            self.nodes = 0

        def field(self) -> str:
            return "".join(self.fields).lstrip(".") or "(the document)"

        def refuse(self, what: str, event: Any) -> SpecError:
            line = event.start_mark.line + 1 if event.start_mark is not None else "?"
            return SpecError(f"{self.spec_path}: field '{self.field()}': {what} (line {line})")

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            # A scalar Python cannot build (an integer of over 4,300 digits, the date 2024-13-45)
            # raises ValueError from the constructor: name the line instead of failing internally.
            try:
                return super().construct_object(node, deep)
            except ValueError as exc:
                line = node.start_mark.line + 1 if node.start_mark is not None else "?"
                value = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
                shown = value if len(value) <= 40 else f"{value[:30]}... ({len(value):,} characters)"
                why = ("numbers in a spec are at most 2**53-1" if "digits" in str(exc) else str(exc))
                raise SpecError(f"{self.spec_path}: the value {shown!r} (line {line}) cannot be read: "
                                f"{why}") from None

        def compose_node(self, parent: Any, index: Any) -> Any:
            # index: the key node for a mapping's value, the position for a sequence item, None
            # for a mapping's key (which is named after its mapping) and for the root.
            if isinstance(index, yaml.ScalarNode):
                name = str(index.value)
                self.fields.append(f".{name if len(name) <= 64 else name[:61] + '...'}")
            elif isinstance(index, int):
                self.fields.append(f"[{index}]")
            else:
                self.fields.append("")
            try:
                event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML is untyped
                if isinstance(event, AliasEvent):
                    raise self.refuse(f"YAML alias '*{event.anchor}' refused: anchors and aliases "
                                      "are not allowed in spec files (write the value out)", event)
                if getattr(event, "anchor", None) is not None:
                    raise self.refuse(f"YAML anchor '&{event.anchor}' refused: anchors and aliases "
                                      "are not allowed in spec files (write the value out)", event)
                if len(self.fields) > SPEC_MAX_DEPTH:   # keys count too: `? ? ? ...` nests
                    raise self.refuse(f"nested more than {SPEC_MAX_DEPTH} levels deep", event)
                self.nodes += 1
                if self.nodes > SPEC_MAX_NODES:
                    raise self.refuse(f"the spec has more than {SPEC_MAX_NODES:,} YAML nodes (keys, "
                                      "values and items), the most a spec may have", event)
                return super().compose_node(parent, index)
            finally:
                self.fields.pop()

    return _SpecLoader
